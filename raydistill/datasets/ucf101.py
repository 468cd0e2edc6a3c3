"""UCF101 and its 50-class MiniUCF subset, in UCF101's official layout::

    ROOT/UCF-101/{Class}/v_{Class}_gXX_cYY.avi
    ROOT/ucfTrainTestlist/classInd.txt       "1 ApplyEyeMakeup"   (1-based: label 0)
    ROOT/ucfTrainTestlist/trainlist0N.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

N is the official split (1-3); splits are ``train`` and ``test``. A video's class is its folder;
a trainlist's class number must agree with it. The list files use CRLF line endings.
"""

from __future__ import annotations

from raydistill.datasets.common import (NOT_UTF8, Listing, ListingBuilder, find_files, read_lines,
                                         root_url)

VIDEOS = "UCF-101"
LISTS = "ucfTrainTestlist"
CLASS_INDEX = f"{LISTS}/classInd.txt"

# The 101 classes in the order of the official classInd.txt (labels 0..100 of a UCF101 run).
UCF101_CLASSES = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
    "BaseballPitch", "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards",
    "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag",
    "BoxingSpeedBag", "BreastStroke", "BrushingTeeth", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "CuttingInKitchen", "Diving", "Drumming", "Fencing",
    "FieldHockeyPenalty", "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut",
    "Hammering", "HammerThrow", "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump",
    "HorseRace", "HorseRiding", "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls",
    "JumpingJack", "JumpRope", "Kayaking", "Knitting", "LongJump", "Lunges", "MilitaryParade",
    "Mixing", "MoppingFloor", "Nunchucks", "ParallelBars", "PizzaTossing", "PlayingCello",
    "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingGuitar", "PlayingPiano", "PlayingSitar",
    "PlayingTabla", "PlayingViolin", "PoleVault", "PommelHorse", "PullUps", "Punch", "PushUps",
    "Rafting", "RockClimbingIndoor", "RopeClimbing", "Rowing", "SalsaSpin", "ShavingBeard",
    "Shotput", "SkateBoarding", "Skiing", "Skijet", "SkyDiving", "SoccerJuggling",
    "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing", "Swing", "TableTennisShot",
    "TaiChi", "TennisSwing", "ThrowDiscus", "TrampolineJumping", "Typing", "UnevenBars",
    "VolleyballSpiking", "WalkingWithDog", "WallPushups", "WritingOnBoard", "YoYo",
)

# The 50-class subset of the video-distillation literature; its labels are these positions.
MINIUCF_CLASSES = (
    "ApplyEyeMakeup", "BalanceBeam", "BandMarching", "BaseballPitch", "Basketball",
    "BasketballDunk", "Biking", "Billiards", "BlowingCandles", "Bowling", "BreastStroke",
    "CleanAndJerk", "CliffDiving", "CricketShot", "Diving", "FloorGymnastics", "FrisbeeCatch",
    "GolfSwing", "HammerThrow", "HighJump", "HorseRace", "HorseRiding", "HulaHoop", "IceDancing",
    "JumpingJack", "Knitting", "MilitaryParade", "Mixing", "ParallelBars", "PlayingPiano",
    "PlayingViolin", "PoleVault", "PommelHorse", "Punch", "Rafting", "Rowing", "SkateBoarding",
    "Skiing", "Skijet", "SkyDiving", "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing",
    "Swing", "TennisSwing", "TrampolineJumping", "UnevenBars", "VolleyballSpiking",
    "WritingOnBoard",
)


def list_videos(root: str, split: int = 1) -> Listing:
    """List the UCF101 videos of official split ``split`` (1-3) under ``root`` (path or URL).

    Returns a :class:`Listing` (``video_id`` = file stem, labels from ``classInd.txt``) and the
    rejects. Raises FileNotFoundError when a list file is absent, ValueError for a bad ``split``.
    """
    return _list(root, split, subset=None)


def list_mini_videos(root: str, split: int = 1) -> Listing:
    """List the MiniUCF videos (the :data:`MINIUCF_CLASSES` of UCF101) of official split ``split``.

    Same as :func:`list_videos`, but labels are positions in :data:`MINIUCF_CLASSES` and videos of
    the other 51 classes are left out (not rejected, even where their list line is malformed).
    """
    return _list(root, split, subset=MINIUCF_CLASSES)


def _list(root: str, split: int, subset: tuple[str, ...] | None) -> Listing:
    """List the train and test videos of ``split``, keeping only ``subset``'s classes if given."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split!r}")
    ucf_classes, class_index_problems = _read_class_index(root)
    builder = ListingBuilder(subset or ucf_classes)
    for line_number, problem in class_index_problems:
        _reject_line(builder, root, CLASS_INDEX, line_number, "", problem)
    existing = find_files(root, VIDEOS)
    for split_name in ("train", "test"):
        list_file = f"{LISTS}/{split_name}list{split:02d}.txt"
        for line_number, line in _numbered_lines(root, list_file):
            try:
                if line is None:  # its class is unknown too: a MiniUCF listing rejects it as well
                    raise ValueError(NOT_UTF8)
                class_name, relative = _parse_list_line(line, ucf_classes, split_name == "train")
            except ValueError as problem:
                if not subset or line is None or line.split("/")[0] in subset:
                    _reject_line(builder, root, list_file, line_number, split_name, str(problem))
                continue
            if subset and class_name not in subset:
                continue
            video_id = relative.rsplit("/", 1)[1].rsplit(".", 1)[0]
            builder.add(video_id, existing.get(f"{VIDEOS}/{relative}"), class_name, split_name,
                        expected_path=root_url(root, f"{VIDEOS}/{relative}"))
    return builder.listing


def _read_class_index(root: str) -> tuple[list[str], list[tuple[int, str]]]:
    """UCF101's class names in label order, and ``(line number, problem)`` per bad line."""
    by_number, problems = {}, []
    for line_number, line in _numbered_lines(root, CLASS_INDEX):
        if line is None:
            problems.append((line_number, NOT_UTF8))
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            problems.append((line_number, f"expected 'NUMBER Class', got {line!r}"))
        elif int(parts[0]) in by_number:
            problems.append((line_number, f"class number {parts[0]} listed again (first: "
                                          f"{by_number[int(parts[0])]})"))
        elif parts[1] in by_number.values():
            problems.append((line_number, f"class {parts[1]} listed again"))
        else:
            by_number[int(parts[0])] = parts[1]
    if sorted(by_number) != list(range(1, len(by_number) + 1)):
        raise ValueError(f"{root_url(root, CLASS_INDEX)}: class numbers are not 1..N")
    return [by_number[number] for number in sorted(by_number)], problems


def _parse_list_line(line: str, ucf_classes: list[str], labelled: bool) -> tuple[str, str]:
    """``(class name, Class/file.avi)`` of a train/test list line; ValueError if malformed."""
    parts = line.split()
    if len(parts) != (2 if labelled else 1) or parts[0].count("/") != 1:
        expected = "'Class/file.avi NUMBER'" if labelled else "'Class/file.avi'"
        raise ValueError(f"expected {expected}, got {line!r}")
    class_name = parts[0].split("/")[0]
    if labelled:
        number = int(parts[1]) if parts[1].isdigit() else 0
        if not 1 <= number <= len(ucf_classes) or ucf_classes[number - 1] != class_name:
            raise ValueError(f"class number {parts[1]} does not name folder {class_name!r}")
    return class_name, parts[0]


def _numbered_lines(root: str, relpath: str) -> list[tuple[int, str | None]]:
    """``(line number from 1, stripped text)`` of each non-blank line (LF or CRLF endings);
    the text is None for a line that is not UTF-8."""
    return [(number, None if line is None else line.strip())
            for number, line in read_lines(root, relpath) if line is None or line.strip()]


def _reject_line(builder: ListingBuilder, root: str, relpath: str, line_number: int,
                 split_name: str, problem: str) -> None:
    """Record a ``bad_annotation`` reject for line ``line_number`` of ``relpath``."""
    builder.reject("", root_url(root, relpath), split_name, "bad_annotation",
                   f"{relpath} line {line_number}: {problem}")
