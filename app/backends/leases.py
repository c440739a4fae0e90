"""A batch's hold on the backend it runs on. Whoever acquires a lease releases it, once, passing whether
the batch asked to unload its model (`RetranslateService.release`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.backends.base import BackendHandle

Release = Callable[[BackendHandle, bool], Awaitable[None]]


class Lease:
    def __init__(self, handle: BackendHandle, release: Release) -> None:
        self.handle = handle
        self._release = release
        self._released = False

    async def release(self, *, unload: bool = False) -> None:
        if not self._released:
            self._released = True
            await self._release(self.handle, unload)
