"""Every error the core raises on purpose. Each one's message is a single line meant for the user;
the command line prints it and exits with code 2, the app shows it beside the widget that caused it."""


class OpticalError(Exception):
    """Base of the errors below: the command line turns any of them into one line and exit code 2."""


class SettingsError(OpticalError, ValueError):
    """A setting out of its range, of the wrong type, or unknown (the message names the field)."""


class DataError(OpticalError, ValueError):
    """Missing or malformed corpus data; the message names the file and, where it can, the line."""


class CheckpointError(OpticalError, ValueError):
    """A path that is not a usable checkpoint; the message names what is missing or wrong."""


class ConversionError(OpticalError, RuntimeError):
    """The 4-bit multilingual-e5-small weights could not be turned into a Hugging Face checkpoint."""


class NonFiniteLoss(OpticalError, FloatingPointError):
    """Training produced a NaN or infinite loss; nothing was saved."""


class TrainingCancelled(OpticalError, RuntimeError):
    """The user stopped a run; nothing was saved."""
