"""optical: does student size change the gain of OT distillation over KD in zero-shot CLIR?

The core library of the app. Nothing here imports streamlit; the pages only call into it.
"""

__version__ = "0.1.0"
