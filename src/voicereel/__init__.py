"""VoiceReel Studio: multi-speaker text-to-speech with time-synchronised captions."""

__version__ = "0.1.0"
