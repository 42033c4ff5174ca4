"""The 7x12 digit bitmaps behind LeNet-5's RBF prototypes (LeCun et al. 1998, section II.B, fig. 3).

The paper draws the ten digits on a 7x12 grid and sets each prototype weight to +1 for an ink pixel
and -1 for background. Its exact pixels are not published as data; these are drawn here in the same
stylised font, once and for all, so the prototypes are the same on every machine and torch release.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DIGITS", "HEIGHT", "WIDTH", "prototypes"]

HEIGHT, WIDTH = 12, 7

# fmt: off
DIGITS: tuple[tuple[str, ...], ...] = (
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."),
    ("..###..", ".#...#.", "#.....#", "......#", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "#######"),
    (".#####.", "#.....#", "......#", "......#", ".....#.", "..###..",
     ".....#.", "......#", "......#", "......#", "#.....#", ".#####."),
    (".....#.", "....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.",
     "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."),
    ("#######", "#......", "#......", "#......", "#####..", ".....#.",
     "......#", "......#", "......#", "......#", "#....#.", ".####.."),
    ("..####.", ".#.....", "#......", "#......", "#.###..", "##...#.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("#######", "......#", ".....#.", ".....#.", "....#..", "....#..",
     "...#...", "...#...", "..#....", "..#....", "..#....", "..#...."),
    ("..###..", ".#...#.", "#.....#", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", ".#...##",
     "..###.#", "......#", "......#", ".....#.", "....#..", ".###..."),
)
# fmt: on


def prototypes(dtype: torch.dtype | None = None) -> Tensor:
    """(10, 84) tensor of +1 (ink) / -1 (background), each row a bitmap read row by row; in the default dtype
    unless ``dtype`` says otherwise, on the default device."""
    rows = [[1.0 if pixel == "#" else -1.0 for line in digit for pixel in line] for digit in DIGITS]
    return torch.tensor(rows, dtype=dtype or torch.get_default_dtype())
