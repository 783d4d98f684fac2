"""ikemgr's PKI: a CA, the gateway certificate, EAP-TLS client certificates, a CRL, PKCS#12.

Built on the ``cryptography`` library, not on ``pki``/``openssl`` subprocesses, so every
field is set from typed values (never from a command line assembled from user input) and
tests can parse every certificate back. Layers:

- ``certs``: pure builders (key + fields in, certificate out) and the OIDs native clients need
- ``crl``, ``pkcs12``: pure encoders
- ``store``: the PKI directory (CA, index of issued/revoked serials, files written atomically,
  keys 0600)
"""
