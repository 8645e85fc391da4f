"""Forward-only learners: sigprop (``sigprop.py``) and EFP (``efp.py``); see ``docs/forward.md``."""
