"""`python -m app.cli CONFIG.json` (console script `retranslate-batch`): the upstream script, replaced.

Everything about the editor's protocol (the config, the model choice, the output and its rules) is in
`app.editor_protocol`, shared with the drop-in `scripts/batch_retranslate.py`. This module runs the batch
in-process through the service's own entry point (`app.service.RetranslateService`: choose the model, run, unload), or,
with `--url`, sends it to a running service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import warnings
from collections.abc import Sequence

from app import editor_protocol as protocol
from app.editor_protocol import Batch, Deadline, Outcome
from app.errors import ServiceError
from app.schemas import ItemResult, RetranslateRequest, Task
from app.service import RetranslateService
from app.settings import Settings, load_settings

log = logging.getLogger("app.cli")


def setup_logging(settings: Settings) -> None:
    # Our progress lines replace the translator's INFO lines; warnings and errors still reach stderr.
    level = max(logging.WARNING, logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.WARNING))
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")


def silence_diagnostics() -> None:
    """From here on nothing but our own lines may reach the output: no log record, no warning."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def _no_backend(detail: str, no_service_at: str | None) -> str:
    if no_service_at:  # the drop-in fell back to us: say both things
        return protocol.no_service_notice(no_service_at, f"no backend can translate in-process: {detail}")
    return "no backend can translate: " + protocol.one_line(detail, protocol.MAX_NOTICE_CHARS)


async def translate_in_process(
    batch: Batch, config_model: str | None, args: object, settings: Settings, deadline: Deadline
) -> Outcome:
    # The same cache as the service (RETRANSLATE_CACHE_PATH): the editor re-runs the same lines often.
    service = RetranslateService(settings, allow_autostart=True)
    try:
        await service.open(check_backend=False)
        return await _in_process(service, batch, config_model, args, deadline)
    finally:
        # An Ollama we had to start stays up: the editor's next steps call Ollama directly.
        service.detach_ollama()
        await service.close()


async def _in_process(
    service: RetranslateService, batch: Batch, config_model: str | None, args: object, deadline: Deadline
) -> Outcome:
    no_service_at = getattr(args, "no_service_at", None)
    batch.report_refused()
    try:
        async with asyncio.timeout(deadline.for_work()):
            installed = await service.available_models()
            if service.demo and not getattr(args, "allow_demo", False):
                return Outcome(notice=protocol.DEMO_NOTICE)
            choice = protocol.choose_model(config_model, installed, not getattr(args, "no_model_fallback", False))
            lease = await service.acquire(choice.name)
    except ServiceError as exc:
        return Outcome(notice=_no_backend(exc.detail, no_service_at))
    except TimeoutError:
        return Outcome(notice=_no_backend(f"the backend was not ready within {deadline.seconds:g} s", no_service_at))
    handle = lease.handle
    outcome = Outcome(model_line=protocol.model_line(choice.name, choice.reason, handle.model, handle.model_reason))
    pending = batch.pending()
    body = RetranslateRequest(
        tasks=[Task.model_validate(task) for _, task in pending],
        model=choice.name,
        deadline_s=deadline.for_work(),
        # Voice cloning runs next on the same GPU: the model is unloaded, inside the deadline (its reserve).
        unload_after=not getattr(args, "keep_loaded", False),
    )

    def on_result(index: int, result: ItemResult, *_: int) -> None:
        batch.finish(pending[index][0], result.model_dump())

    try:
        # The translator keeps its own deadline; this one only guards against it overrunning.
        async with asyncio.timeout(deadline.remaining()):
            await service.retranslate(body, lease, on_result=on_result)
    except TimeoutError:
        pass  # the unfinished items fail with the deadline's reason
    finally:
        # Even after an overrun, the unload gets its reserve: a model left loaded makes voice cloning run
        # out of GPU memory.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline.remaining(), deadline.reserve)):
                await service.release(lease, unload=body.unload_after)
    await service.settle(max(deadline.remaining(), deadline.reserve))
    return outcome


def translate_via_service(
    batch: Batch, config_model: str | None, args: object, deadline: Deadline, url: str
) -> Outcome:
    # The service's own setting (environment or .env), so one key configures both.
    key = load_settings().api_key
    try:
        client = protocol.ServiceClient(url, key.get_secret_value() if key else None)
        return protocol.translate_via_service(client, batch, config_model, args, deadline)
    except protocol.ServiceDown as exc:
        return Outcome(notice=f"the service at {url} did not answer: {exc}; {protocol.START_HINT}")
    except protocol.NoResults as exc:
        return Outcome(notice=str(exc))


def run(argv: Sequence[str] | None = None) -> int:
    """The whole CLI run; returns the exit code."""
    protocol.use_utf8_streams()
    args = protocol.parse_args(
        "retranslate-batch", argv, url_help="send the work to the service running at URL instead of translating here"
    )
    settings = load_settings()
    setup_logging(settings)
    deadline = Deadline(protocol.deadline_seconds(args, settings.cli_deadline_s))
    try:
        config = protocol.read_config(args.config)
    except protocol.ConfigError as exc:
        silence_diagnostics()
        return protocol.finish_run(Batch([]), Outcome(notice=str(exc)), args, deadline)
    batch = Batch(config["tasks"])
    outcome = Outcome()
    if batch.pending():  # zero tasks (or none valid): no backend needed
        try:
            if args.url:
                outcome = translate_via_service(batch, config.get("model"), args, deadline, args.url)
            else:
                outcome = asyncio.run(translate_in_process(batch, config.get("model"), args, settings, deadline))
        except Exception:  # a bug must not cost the editor the lines that did finish
            log.exception("the batch stopped on an unexpected error")
            outcome = Outcome(notice="the batch stopped on an unexpected error (see the log above)")
    silence_diagnostics()
    return protocol.finish_run(batch, outcome, args, deadline)


def main(argv: Sequence[str] | None = None) -> int:
    code = run(argv)
    protocol.seal_output()
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
