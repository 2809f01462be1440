"""gunicorn's logger with gsync's redaction: `--logger-class gsync.gunicorn_logger.RedactingLogger`
(README's production command). Imported by gunicorn only: gunicorn need not be installed else.

Every access-log atom goes through gsync.redaction (the request line `%(r)s`, the path `%(U)s`,
the query `%(q)s`, the referer, environ atoms), and header atoms whose name says secret are
dropped, so no format an operator picks can write a webhook token or secret. The error log gets
the same filter (gunicorn logs a bad request line there).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from gsync.redaction import REDACTED, RedactSecrets, is_secret_name, redact


class RedactingLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactSecrets) for f in log.filters):
                log.addFilter(RedactSecrets())

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: _redact_atom(name, value) for name, value in atoms.items()}


def _redact_atom(name: str, value: Any) -> Any:
    if name.startswith("{") and is_secret_name(name):
        return REDACTED
    return redact(value) if isinstance(value, str) else value
