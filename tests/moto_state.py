"""A picture of moto's state, taken once and restored into each test's fresh mock.

Creating the portal's platform in moto (tables, buckets, queues, a Cognito pool, seeded jobs and
models) costs about half a second of API calls; restoring what those calls left behind costs
about five milliseconds. So a fixture builds its platform once per worker, takes a
:class:`MotoState`, and every test enters its own ``mock_aws()`` (which starts from nothing, as
before) and restores that state into it. Each test gets its own copy: what one test writes,
no other test sees.

moto keeps everything in region backends (``BackendDict`` -> account -> region -> backend). The
state is one pickle of every backend in use, so references between them survive. Three kinds of
object are not pickled:

- moto's own ``BackendDict`` and per-account containers, which are module-level singletons: a
  reference to one is restored as a reference to the live one;
- cryptography's key objects (Cognito's signing keys), which cannot be pickled and never change:
  they are shared;
- locks, which are recreated unlocked.
"""

from __future__ import annotations

import io
import pickle
import threading
from typing import Any

from moto.core.base_backend import AccountSpecificBackend, BackendDict

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())

BackendKey = tuple[str, str, str]
"""(service, account, region) of one region backend."""


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, shared: dict[int, Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj: Any) -> tuple[str, ...] | None:
        if isinstance(obj, BackendDict):
            return ("services", obj.service_name)
        if isinstance(obj, AccountSpecificBackend):
            return ("accounts", obj.service_name, obj.account_id)
        if type(obj).__module__.startswith("cryptography."):
            self.shared[id(obj)] = obj
            return ("shared", str(id(obj)))
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LOCK):
            return (threading.Lock, ())
        if isinstance(obj, _RLOCK):
            return (threading.RLock, ())
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(
        self, file: io.BytesIO, services: dict[str, BackendDict[Any]], shared: dict[int, Any]
    ) -> None:
        super().__init__(file)
        self.services = services
        self.shared = shared

    def persistent_load(self, pid: tuple[str, ...]) -> Any:
        match pid:
            case ("services", service):
                return self.services[service]
            case ("accounts", service, account):
                return self.services[service][account]
            case ("shared", key):
                return self.shared[int(key)]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


class MotoState:
    """Every moto backend in use at the moment :meth:`take` was called."""

    def __init__(self, blob: bytes, services: dict[str, BackendDict[Any]], shared: dict[int, Any]):
        self._blob = blob
        self._services = services
        self._shared = shared

    @classmethod
    def take(cls) -> MotoState:
        """Call inside ``mock_aws()``, after the calls whose results every test should see."""
        services = {backends.service_name: backends for backends in BackendDict._instances}
        state: dict[BackendKey, Any] = {
            (service, account, region): backend
            for service, backends in services.items()
            for account, region, backend in backends.iter_backends()
        }
        shared: dict[int, Any] = {}
        buffer = io.BytesIO()
        _Pickler(buffer, shared).dump(state)
        return cls(buffer.getvalue(), services, shared)

    def restore(self) -> None:
        """Call first thing inside a fresh ``mock_aws()``: its backends become a copy."""
        if BackendDict._instances:
            raise RuntimeError("restore into a fresh mock_aws(): some moto backends are in use")
        state: dict[BackendKey, Any] = _Unpickler(
            io.BytesIO(self._blob), self._services, self._shared
        ).load()
        for (service, account, region), backend in state.items():
            # Indexing the account registers the service with moto, so mock_aws() resets it on exit.
            dict.__setitem__(self._services[service][account], region, backend)
