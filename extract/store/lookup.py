"""Which stored set a spec, name or key means: exact key, then spec or name, then what the
caller asks for; several left is :class:`~extract.store.schema.AmbiguousSet`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from data.hints import extract_command, is_spec
from extract.store.schema import AmbiguousSet, SetHeader


def extract_hint(workdir: Path, spec_or_key: str) -> str:
    """``Run `<the extract command>` first.`` for a missing set (data.hints)."""
    if is_spec(spec_or_key):
        return f"Run `{extract_command(workdir, spec_or_key)}` first."
    return (f"{spec_or_key!r} is no extractor spec; to compute a set, run "
            f"`{extract_command(workdir, 'SPEC')}` first, SPEC being e.g. opensmile:eGeMAPSv02.")


def find_set(hs: dict[str, SetHeader], spec_or_key: str, workdir: Path, *,
             usable: Sequence[Callable[[SetHeader], str | None]] = ()) -> SetHeader:
    """The one set matching a key, a spec (``opensmile:eGeMAPSv02``) or a name.

    Several sets can share a spec: extracting another pooling or layer of the same model
    makes another set (see the package docstring). ``usable`` resolves the name by what the
    caller asks for: each test returns None when a set serves the request, or why it does
    not. The tests are tried in order (the strictest first); the first one that some
    matching sets pass decides among them.

    Raises:
        KeyError: nothing matches (lists what is stored).
        AmbiguousSet: several sets serve the request (names the config fields that differ).
    """
    if spec_or_key in hs:
        return hs[spec_or_key]
    hits = [h for h in hs.values() if spec_or_key in (h.spec, h.name)]
    if len(hits) == 1:
        return hits[0]
    stored = "\n  ".join(f"{h.key}  ({h.spec})" for h in hs.values()) or "none"
    if not hits:
        raise KeyError(
            f"no feature set matches {spec_or_key!r} in {workdir}. Stored sets:\n  {stored}\n"
            + extract_hint(workdir, spec_or_key)
        )
    reasons: dict[str, str] = {}
    for test in usable:
        fit = []
        for h in hits:
            why = test(h)
            if why is None:
                fit.append(h)
            else:
                reasons.setdefault(h.key, why)
        if len(fit) == 1:
            return fit[0]
        if fit:
            hits = fit
            break
    else:
        if usable:  # no set serves the request: say what each one lacks
            raise KeyError(
                f"{len(hits)} feature sets match {spec_or_key!r} in {workdir}, none holds "
                f"what was asked:\n  " + "\n  ".join(f"{h.key}: {reasons[h.key]}" for h in hits))
    raise AmbiguousSet(spec_or_key, hits)

