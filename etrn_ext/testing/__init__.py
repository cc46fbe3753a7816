"""Real peers for tests, benchmarks and the demo: a private Postfix, a fake site, a PostgreSQL.

Nothing in production imports this package (an import-linter contract says so). It
needs the ``test`` extra (aiosmtpd) and, for the servers, root and Debian's packages.
"""
