"""The exceptions lmobjectives raises, in one hierarchy (design: §errors).

Every error about the caller's input subclasses :class:`LMObjectivesError`, itself a
``ValueError``, so existing ``except ValueError`` clauses keep working; an argument of the
wrong type is an :class:`ArgumentTypeError`, which is also a ``TypeError``. Messages name
the argument and, for data, the position (``input_ids[3][17]``). The Rust kernels raise these
same classes (the bindings look them up here), and no Rust panic reaches Python: a bug inside
a kernel is an :class:`InternalError`.

>>> import lmobjectives
>>> try:
...     lmobjectives.MLMCollator(vocab_size=100, mask_token_id=4, pad_token_id=2**70)
... except lmobjectives.errors.InvalidArgumentError as e:
...     print(str(e).split(":")[0])
pad_token_id
"""

from __future__ import annotations

__all__ = [
    "ArgumentTypeError",
    "CorpusError",
    "InternalError",
    "InvalidArgumentError",
    "LMObjectivesError",
    "LimitError",
    "ShapeError",
    "TokenIdError",
]

_PLACEHOLDER = "{arg}"
_PYO3_NOTE = "while processing '"


class LMObjectivesError(ValueError):
    """Base class of the errors lmobjectives raises about its input (a ``ValueError``)."""

    def add_note(self, note: str, /) -> None:
        # The bindings convert each argument before they know its name; the PyO3 wrapper then
        # adds the note "while processing 'NAME'". An error whose message starts with the
        # placeholder takes the name into its message instead, so ``str(e)`` names it.
        message = self.args[0] if len(self.args) == 1 else None
        if (
            isinstance(message, str)
            and message.startswith(_PLACEHOLDER)
            and note.startswith(_PYO3_NOTE)
            and note.endswith("'")
        ):
            name = note[len(_PYO3_NOTE) : -1]
            self.args = (name + message[len(_PLACEHOLDER) :],)
            return
        parent = getattr(super(), "add_note", None)
        if parent is not None:  # Python >= 3.11
            parent(note)
        else:  # Python 3.10: keep the note where 3.11 would
            notes = getattr(self, "__notes__", None)
            if notes is None:
                notes = []
                self.__notes__ = notes
            notes.append(note)


class InvalidArgumentError(LMObjectivesError):
    """A parameter or input value is outside what lmobjectives accepts."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (a bool or a float where an int is expected, a string
    where numbers are): both an :class:`InvalidArgumentError` and a ``TypeError``."""


class LimitError(InvalidArgumentError):
    """A size derived from the arguments is over a documented limit (see
    :data:`lmobjectives.errors.MAX_ELEMENTS`); raised before anything is allocated."""


class TokenIdError(LMObjectivesError):
    """A token id lies outside ``[0, vocab_size)``."""


class ShapeError(LMObjectivesError):
    """Arrays that must line up (lengths, shapes) do not."""


class CorpusError(LMObjectivesError):
    """A token corpus on disk is damaged or inconsistent (checksum, header, manifest, an id
    outside the vocabulary); the message names the file."""


class InternalError(LMObjectivesError):
    """A bug inside lmobjectives (a Rust panic caught at the boundary); please report it.

    A subclass of :class:`LMObjectivesError` so that one ``except`` still catches every error
    the library raises, while a caller that wants to tell bugs from bad input can."""


#: The most elements one output array may hold (2³⁰): larger batches fail with a
#: :class:`LimitError` before anything is allocated.
MAX_ELEMENTS = 1 << 30

#: The largest vocabulary the kernels accept (2²⁴ ids): they keep per-id tables.
MAX_VOCAB = 1 << 24
