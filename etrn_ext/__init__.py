"""etrn-ext: first-class support for intermittent mail domains in Postfix and Sendmail.

Importing the package starts nothing; programs live in ``etrn_ext.cli`` and ``etrn_ext.daemons``.
"""

__version__ = "0.1.0"
