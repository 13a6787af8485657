"""Frames recorded epoch by epoch under a budget (the scrubber's probes.pt, the map over training's
features.pt): all frames of a run have one size, so the budget is a number of frames. When one
more would not fit, the stride doubles (1, 2, 4, ...) and the frames off it are dropped: the kept
epochs are 0, s, 2s, ... and always the latest one."""
from __future__ import annotations


def add_frame(frames: dict, epoch: int, frame, stride: int, max_frames: int) -> int:
    """Keep `frame` as `epoch`'s in `frames`, forgetting frames at that epoch or later (a restarted
    run leaves no stale ones); returns the stride now in force."""
    for e in [e for e in frames if e >= epoch]:
        del frames[e]
    if frames:  # the previous latest was kept only for being the latest: drop it off the spacing
        latest = max(frames)
        if latest % stride:
            del frames[latest]
    frames[epoch] = frame
    return thin(frames, stride, max_frames)


def thin(frames: dict, stride: int, max_frames: int) -> int:
    """Double the stride until the frames fit: keep multiples of it, and the latest; the new stride."""
    latest = max(frames, default=0)
    while len(frames) > max_frames:
        stride *= 2
        for e in [e for e in frames if e % stride and e != latest]:
            del frames[e]
    return stride
