"""TLS client contexts, one helper for all of them: insecure, verifying, trusting one CA file, pinned to a version.

The suite's own clients never build an ``ssl.SSLContext`` themselves; they ask ``client_context`` (or its two
shorthands) and hand the context to ``CapturedConnection.start_tls``, which decides who is at fault when the
handshake fails.
"""

from __future__ import annotations

import ssl

VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
OLD_VERSIONS = ("TLSv1", "TLSv1.1")
GOOD_VERSIONS = ("TLSv1.2", "TLSv1.3")


def client_context(verify: bool = False, *, ca_file: str | None = None, check_hostname: bool | None = None,
                   version: str | None = None, minimum: ssl.TLSVersion | None = None,
                   maximum: ssl.TLSVersion | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context.

    - ``verify=False`` and no ``ca_file``: no verification (reference servers are self-signed);
    - ``ca_file``: verify against that CA only (a target's own CA, or the path's interception CA);
    - ``verify=True``: verify against the system trust store;
    - ``check_hostname``: defaults to on whenever the context verifies;
    - ``version`` pins one version ("TLSv1.2"); for TLS 1.0/1.1 the security level is lowered to 0, since
      OpenSSL 3 refuses their SHA-1/MD5 signatures at level 1 and above: the client really offers the old
      version, and a refusal is the server's;
    - ``minimum``/``maximum`` bound the versions; ``alpn`` sets the ALPN protocols offered.
    """
    if ca_file:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    if check_hostname is not None and ctx.verify_mode != ssl.CERT_NONE:
        ctx.check_hostname = check_hostname
    if version is not None:
        if version in OLD_VERSIONS:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        minimum = maximum = VERSIONS[version]
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def insecure_context(minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that does not verify (test servers are self-signed), optionally bounded in version."""
    return client_context(minimum=minimum, maximum=maximum)


def pinned_context(version: str) -> ssl.SSLContext:
    """A non-verifying client context that offers exactly one TLS version (see ``client_context``)."""
    return client_context(version=version)


def trusting(ca_file: str) -> ssl.SSLContext:
    """Verify against ``ca_file`` only, without a host name check (the path's interception CA names
    whatever host the client asked for, but the suite connects by address)."""
    return client_context(ca_file=ca_file, check_hostname=False)
