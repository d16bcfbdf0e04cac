"""KnowUnDo: knowledge unlearning for LLMs that forgets the Unlearn Scope and keeps the Retention Scope."""

__version__ = "0.1.0"
