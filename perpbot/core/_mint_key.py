"""The risk gate's minting key for `ApprovedOrder` (no behaviour, one object).

Only `perpbot.core.approved` (which checks it) and `perpbot.risk.approved` (which mints with it)
import this module; the import contract `only-risk-mints` fails any other direct importer.
"""

GATE_KEY = object()
