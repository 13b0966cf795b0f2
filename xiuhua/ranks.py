"""Ranks that never separate equal scores (并列), and the red/black/bottom lists drawn from them. Pure.

Equal scores share a rank (1, 2, 2, 4: standard competition ranking), and no list ever separates them: a tie at
a list's boundary is listed whole. A score that would then stand on both the red and the black list — equal
scores at both ends, e.g. every unit of a role at 30.0, or two units with the same score — stands on neither:
nothing tells them apart. Scoring's tables and the bulletin's own ranking both use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Standing:
    """Where one score stands among its role's scores."""

    rank: int  # 1 + the number of scores strictly better
    tied: bool  # another row has the same score
    red: bool
    black: bool
    bottom: bool


def standings(scores: list[float], red: int, black: int, bottom: int, *, half: bool = True) -> list[Standing]:
    """Each score's rank and lists, for scores given best first. `red`/`black` are capped at half the rows (unless
    not `half`) and `bottom` applies only when there are more rows than that (with three units everyone would be
    'bottom three')."""
    n = len(scores)
    red_n, black_n = (min(red, n // 2), min(black, n // 2)) if half else (red, black)
    out = []
    for s in scores:
        better = sum(1 for x in scores if x > s)
        worse = sum(1 for x in scores if x < s)
        tied = sum(1 for x in scores if x == s) > 1
        in_red, in_black = better < red_n, worse < black_n
        if in_red and in_black:
            in_red = in_black = False  # equal scores at both ends: nothing distinguishes them
        out.append(
            Standing(
                rank=better + 1,
                tied=tied,
                red=in_red,
                black=in_black,
                bottom=n > bottom and worse < bottom and better > 0,
            )
        )
    return out
