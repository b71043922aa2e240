"""Kubernetes ``$(VAR)`` expansion for command, args and env values. Pure logic.

Rules (``third_party/forked/golang/expansion``): ``$(NAME)`` becomes the value of NAME when it is defined and
stays as written otherwise; ``$$`` is an escaped ``$`` (so ``$$(NAME)`` yields the literal ``$(NAME)``);
any other ``$`` is kept.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            if name in env:
                out.append(env[name])
            else:
                out.append(text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)
