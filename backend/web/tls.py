"""TLS files checked at start, so that a wrong file is one line naming it rather than the web server's
traceback from inside its startup."""

import ssl
from pathlib import Path

from backend.core.errors import ConfigError


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    """Both or neither given; readable; a PEM certificate and the unencrypted PEM private key that belongs to it."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    if certfile is None or keyfile is None:
        return
    for path in (certfile, keyfile):
        if not path.is_file():
            raise ConfigError(f"{path}: TLS file not found")
    try:
        ssl.create_default_context(cafile=str(certfile))
    except ssl.SSLError:
        raise ConfigError(
            f"{certfile}: not a PEM certificate (--ssl-certfile; expected a '-----BEGIN CERTIFICATE-----' block)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{certfile}: cannot read the certificate ({e.strerror})") from None
    try:
        # A password callback that gives none: an encrypted key is refused here instead of prompting at start.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise ConfigError(f"{keyfile}: this private key does not belong to the certificate {certfile}") from None
        raise ConfigError(
            f"{keyfile}: not an unencrypted PEM private key (--ssl-keyfile; expected a "
            "'-----BEGIN PRIVATE KEY-----' block without a passphrase)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{keyfile}: cannot read the private key ({e.strerror})") from None
