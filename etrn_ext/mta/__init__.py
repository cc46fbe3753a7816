"""MTA adapters behind one small interface; the only code that runs MTA commands."""
