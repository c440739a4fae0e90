# The retranslate service. Slim, non-root; talks to Ollama over HTTP (see docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    # Inside the container the service must listen on all interfaces; compose publishes it on
    # 127.0.0.1 only.
    RETRANSLATE_HOST=0.0.0.0 RETRANSLATE_PORT=8642 \
    # No `ollama` binary in this image: compose runs Ollama as its own service.
    RETRANSLATE_AUTOSTART_OLLAMA=false

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install . && useradd --system --uid 10001 --no-create-home retranslate
USER retranslate

EXPOSE 8642
# No curl in slim images: ask /ready with the Python we already have.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8642/ready', timeout=4).status == 200 else 1)"

CMD ["python", "-m", "app"]
