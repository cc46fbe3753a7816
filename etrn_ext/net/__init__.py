"""Outbound clients: DNS lookups (dnspython) and, later, SMTP."""
