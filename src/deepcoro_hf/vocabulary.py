"""Clinical vocabulary of DeepCORO-CLIP: coronary segments, label columns, tasks, angiographic views and report text.

Every other module imports the vocabulary from here, so a segment, a label column or a view is spelled once. The
module uses only the standard library: it is copied next to the configuration as Hub remote code.

Sources: the paper's Extended Table 1 (views) and Extended Table 5 (SYNTAX segments), and the label columns of the
released DeepCORO-CLIP stenosis model (`{segment}_{task}`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

Territory = Literal["LCA", "RCA"]
Dominance = Literal["right", "left", "co"]
TaskType = Literal["regression", "binary"]


@dataclass(frozen=True)
class Segment:
    """One of the 18 coronary segments graded in the paper (SYNTAX definitions, Extended Table 5)."""

    key: str
    """Prefix of the label columns, e.g. `prox_rca` in `prox_rca_stenosis` (spelled as in the released model)."""
    name: str
    """Display name used in tables and reports."""
    syntax: str
    """SYNTAX segment number ("12a" and "12b" for the obtuse marginals)."""
    territory: Territory
    """Territory used for the paper's LCA / RCA micro-averages (fixed, whatever the dominance)."""
    dominance_dependent: bool = False
    """Whether the segment's origin (and so the report it belongs to) depends on coronary dominance."""


# Order of the released model's heads: RCA tree first, then the left coronary tree.
SEGMENTS: tuple[Segment, ...] = (
    Segment("prox_rca", "proximal RCA", "1", "RCA"),
    Segment("mid_rca", "mid RCA", "2", "RCA"),
    Segment("dist_rca", "distal RCA", "3", "RCA"),
    Segment("pda", "PDA", "4", "RCA", dominance_dependent=True),
    Segment("posterolateral", "posterolateral branch", "16", "RCA", dominance_dependent=True),
    Segment("left_main", "left main", "5", "LCA"),
    Segment("prox_lad", "proximal LAD", "6", "LCA"),
    Segment("mid_lad", "mid LAD", "7", "LCA"),
    Segment("dist_lad", "distal LAD", "8", "LCA"),
    Segment("D1", "first diagonal (D1)", "9", "LCA"),
    Segment("D2", "second diagonal (D2)", "10", "LCA"),
    Segment("prox_lcx", "proximal LCX", "11", "LCA"),
    Segment("mid_lcx", "mid LCX", "13", "LCA"),
    Segment("dist_lcx", "distal LCX", "15", "LCA"),
    Segment("om1", "first obtuse marginal (OM1)", "12a", "LCA"),
    Segment("om2", "second obtuse marginal (OM2)", "12b", "LCA"),
    Segment("bx", "ramus intermedius", "12", "LCA"),
    Segment("lvp", "left ventricular posterior branch (LVP)", "14", "LCA", dominance_dependent=True),
)
SEGMENT_KEYS: tuple[str, ...] = tuple(s.key for s in SEGMENTS)
SEGMENT_BY_KEY: dict[str, Segment] = {s.key: s for s in SEGMENTS}
TERRITORIES: tuple[Territory, ...] = ("LCA", "RCA")

# Per-segment tasks of the released stenosis model: column suffix -> task type.
SEGMENT_TASKS: dict[str, TaskType] = {
    "stenosis": "regression",  # percent diameter reduction, 0-100
    "stenosis_binary": "binary",  # stenosis >= 70 %
    "calcif_binary": "binary",  # moderate or severe calcification
    "cto": "binary",  # chronic total occlusion
    "thrombus": "binary",
}
# Study-level transfer tasks of the paper (no segment axis).
MACE_TASKS: dict[str, TaskType] = {
    "urgent_revascularization": "binary",
    "non_fatal_mi": "binary",
    "complete_occlusion": "binary",
    "mace_composite": "binary",
}
LVEF_TASKS: dict[str, TaskType] = {
    "lvef": "regression",
    "lvef_below_40": "binary",
    "lvef_below_50": "binary",
}
TASK_DISPLAY_NAMES: dict[str, str] = {
    "stenosis": "Stenosis (%)",
    "stenosis_binary": "Stenosis >= 70%",
    "calcif_binary": "Calcification (moderate-severe)",
    "cto": "Chronic total occlusion",
    "thrombus": "Thrombus",
    "urgent_revascularization": "Urgent revascularization",
    "non_fatal_mi": "Non-fatal myocardial infarction",
    "complete_occlusion": "Complete coronary occlusion",
    "mace_composite": "MACE (composite)",
    "lvef": "LVEF (%)",
    "lvef_below_40": "LVEF < 40%",
    "lvef_below_50": "LVEF < 50%",
}

# Short column headers for tables of predictions (regression in label units, binary tasks as probabilities).
TASK_COLUMN_NAMES: dict[str, str] = {
    "stenosis": "Stenosis %",
    "stenosis_binary": "P(>=70%)",
    "calcif_binary": "Calcif.",
    "cto": "CTO",
    "thrombus": "Thrombus",
    "urgent_revascularization": "Urgent revasc.",
    "non_fatal_mi": "Non-fatal MI",
    "complete_occlusion": "Occlusion",
    "mace_composite": "MACE",
    "lvef": "LVEF %",
    "lvef_below_40": "LVEF < 40%",
    "lvef_below_50": "LVEF < 50%",
}

SIGNIFICANT_STENOSIS = 70.0
"""Paper definition of significant stenosis: >= 70 % diameter reduction (the original's export used > 70)."""

CALCIFICATION_GRADES: tuple[str, ...] = ("none", "mild", "moderate", "severe")
"""`calcif_binary` is 1 for the two highest grades (paper: "moderate-severe")."""


def label_column(segment: str, task: str) -> str:
    """Manifest / head column of one segment and task, e.g. `("mid_lad", "cto") -> "mid_lad_cto"`."""
    return f"{segment}_{task}"


def head_names(segments: tuple[str, ...] | list[str], tasks: Mapping[str, str]) -> list[str]:
    """Column names of a head grid in segment-major order; study-level tasks (no segments) keep their own names."""
    if not segments:
        return list(tasks)
    return [label_column(s, t) for s in segments for t in tasks]


LABEL_COLUMNS: tuple[str, ...] = tuple(head_names(SEGMENT_KEYS, SEGMENT_TASKS))


def segments_for_territory(territory: Territory, dominance: Dominance = "right") -> tuple[str, ...]:
    """Segments a left- or right-coronary video shows, which is what its report describes.

    The PDA and posterolateral branch arise from the RCA in right dominance and from the circumflex otherwise; the
    LVP branch is only reported for left or co-dominant circulations (the paper's labelling rule).
    """
    if territory not in TERRITORIES:
        raise ValueError(f"territory must be one of {TERRITORIES}, got {territory!r}")
    if dominance not in ("right", "left", "co"):
        raise ValueError(f"dominance must be 'right', 'left' or 'co', got {dominance!r}")
    right_dominant = dominance == "right"
    keys = []
    for seg in SEGMENTS:
        if seg.key in ("pda", "posterolateral"):
            side = "RCA" if right_dominant else "LCA"
        elif seg.key == "lvp":
            side = None if right_dominant else "LCA"
        else:
            side = seg.territory
        if side == territory:
            keys.append(seg.key)
    return tuple(keys)


# --------------------------------------------------------------------------------------------------------------
# Angiographic views (Extended Table 1)
# --------------------------------------------------------------------------------------------------------------
VIEWS: tuple[str, ...] = (
    "RAO Cranial",
    "AP Cranial",
    "LAO Cranial",
    "RAO Straight",
    "AP",
    "RAO Caudal",
    "AP Caudal",
    "LAO Caudal",
    "LAO Straight",
    "LAO Lateral",
    "RAO Lateral",
    "Other",
)

# Representative (primary, secondary) angles of each view, in DICOM sign convention: primary LAO > 0 > RAO,
# secondary cranial > 0 > caudal. Used by the phantoms and to describe a view.
VIEW_ANGLES: dict[str, tuple[float, float]] = {
    "RAO Cranial": (-30.0, 30.0),
    "AP Cranial": (0.0, 30.0),
    "LAO Cranial": (30.0, 30.0),
    "RAO Straight": (-30.0, 0.0),
    "AP": (0.0, 0.0),
    "RAO Caudal": (-30.0, -30.0),
    "AP Caudal": (0.0, -30.0),
    "LAO Caudal": (30.0, -30.0),
    "LAO Straight": (30.0, 0.0),
    "LAO Lateral": (90.0, 0.0),
    "RAO Lateral": (-90.0, 0.0),
    "Other": (60.0, 60.0),
}


def _band(angle: float) -> str | None:
    """Oblique band of one angle (Extended Table 1). Intervals are closed; a shared edge (±15°) goes to the centre."""
    if -15.0 <= angle <= 15.0:
        return "centre"
    if 15.0 < angle <= 45.0:
        return "positive"
    if -45.0 <= angle < -15.0:
        return "negative"
    return None


def classify_view(primary_angle: float | None, secondary_angle: float | None) -> str:
    """Map DICOM PositionerPrimaryAngle (LAO +, RAO -) and PositionerSecondaryAngle (cranial +, caudal -) to a view.

    Follows Extended Table 1 of the paper; angles outside every class (or missing) give "Other".
    """
    if primary_angle is None or secondary_angle is None:
        return "Other"
    primary, secondary = float(primary_angle), float(secondary_angle)
    if math.isnan(primary) or math.isnan(secondary):
        return "Other"
    tilt = _band(secondary)
    if tilt == "centre" and 70.0 <= primary <= 110.0:
        return "LAO Lateral"
    if tilt == "centre" and -110.0 <= primary <= -70.0:
        return "RAO Lateral"
    side = {"negative": "RAO", "centre": "AP", "positive": "LAO"}.get(_band(primary) or "")
    if side is None or tilt is None:
        return "Other"
    if tilt == "centre":
        return "AP" if side == "AP" else f"{side} Straight"
    return f"{side} {'Cranial' if tilt == 'positive' else 'Caudal'}"


# --------------------------------------------------------------------------------------------------------------
# Report text
# --------------------------------------------------------------------------------------------------------------
def stenosis_grade(percent: float) -> str:
    """Severity word of a diameter stenosis, using the original report's cut-offs (<50, <70, <90, else critical)."""
    if percent <= 0:
        return "no significant"
    if percent < 50:
        return "mild"
    if percent < 70:
        return "moderate"
    if percent < 90:
        return "severe"
    return "critical"


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_segment(
    segment: str,
    stenosis: float | None,
    cto: bool = False,
    calcification: str | None = None,
    thrombus: bool = False,
    dominance: Dominance = "right",
) -> str:
    """One report sentence for one segment, e.g. "The mid LAD has a severe stenosis (80%) with thrombus."."""
    seg = SEGMENT_BY_KEY[segment]
    name = seg.name
    if dominance != "right" and segment in ("pda", "posterolateral"):
        name = f"left {name}"
    subject = f"The {name}"
    extras = []
    if calcification in ("mild", "moderate", "severe", PREDICTED_CALCIFICATION):
        extras.append(f"{calcification} calcification")
    if thrombus:
        extras.append("thrombus")
    tail = f" with {' and '.join(extras)}" if extras else ""
    if cto:
        return f"{subject} is totally occluded (chronic total occlusion){tail}."
    if stenosis is None or math.isnan(stenosis) or stenosis <= 0:
        return f"{subject} has no significant stenosis{tail}."
    grade = stenosis_grade(stenosis)
    article = "an" if grade[0] in "aeiou" else "a"
    return f"{subject} has {article} {grade} stenosis ({stenosis:.0f}%){tail}."


def build_report(
    labels: Mapping[str, float | int | str | None],
    dominance: Dominance = "right",
    territory: Territory | None = None,
) -> str:
    """Report text from structured labels (`{segment}_{task}` columns; `{segment}_calcif` may hold a grade).

    With `territory`, only the segments a left or right coronary video shows are described (the paper pairs left
    videos with left-territory sentences). Segments whose stenosis is missing are left out, not reported normal.
    """
    keys = segments_for_territory(territory, dominance) if territory else SEGMENT_KEYS
    lines = []
    for key in keys:
        stenosis = labels.get(label_column(key, "stenosis"))
        cto = labels.get(label_column(key, "cto"))
        if (stenosis is None or _is_missing(stenosis)) and not _truthy(cto):
            continue
        grade = labels.get(label_column(key, "calcif"))
        if not isinstance(grade, str):
            grade = "moderate" if _truthy(labels.get(label_column(key, "calcif_binary"))) else None
        lines.append(
            describe_segment(
                key,
                None if stenosis is None or _is_missing(stenosis) else float(stenosis),
                cto=_truthy(cto),
                calcification=grade,
                thrombus=_truthy(labels.get(label_column(key, "thrombus"))),
                dominance=dominance,
            )
        )
    dominance_text = {"right": "right dominant", "left": "left dominant", "co": "co-dominant"}[dominance]
    lines.append(f"The coronary circulation is {dominance_text}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Report of a model's predictions (the deployment's template-based report)
# --------------------------------------------------------------------------------------------------------------
PREDICTED_CALCIFICATION = "moderate or severe"
"""How a report words a positive `calcif_binary` prediction: the head does not tell moderate from severe."""

SEGMENT_FINDINGS: tuple[str, ...] = tuple(task for task, kind in SEGMENT_TASKS.items() if kind == "binary")
"""Binary segment tasks; a probability at or above the decision threshold makes a finding in the report."""


def describe_predicted_segment(segment: str, predictions: Mapping[str, float], threshold: float) -> str | None:
    """Report sentence of one segment from a model's outputs, or None when no finding reaches `threshold`.

    `predictions` maps task names to outputs: `stenosis` in % (rounded and clamped to 0-100 for the text), binary tasks
    as probabilities. E.g. "The mid LAD has a severe stenosis (82%) with thrombus.".
    """
    found = {task for task in SEGMENT_FINDINGS if task in predictions and predictions[task] >= threshold}
    if not found:
        return None
    stenosis = predictions.get("stenosis")
    if stenosis is None and "stenosis_binary" in found and "cto" not in found:
        # A model without the regression head: only the >= 70 % probability speaks for the stenosis.
        return f"The {SEGMENT_BY_KEY[segment].name} has a significant stenosis (>= {SIGNIFICANT_STENOSIS:.0f}%)."
    return describe_segment(
        segment,
        None if stenosis is None else min(max(round(float(stenosis)), 0), 100),
        cto="cto" in found,
        calcification=PREDICTED_CALCIFICATION if "calcif_binary" in found else None,
        thrombus="thrombus" in found,
    )


def describe_study_prediction(task: str, value: float, task_type: TaskType, threshold: float) -> str:
    """Report sentence of a study-level task (MACE, LVEF...), e.g. "LVEF (%): 48.3." or
    "MACE (composite): probability 0.62 (at or above the threshold 0.50)."."""
    name = TASK_DISPLAY_NAMES.get(task, task)
    if task_type == "regression":
        return f"{name}: {value:.1f}."
    side = "at or above" if value >= threshold else "below"
    return f"{name}: probability {value:.2f} ({side} the threshold {threshold:.2f})."


def prediction_report(
    segments: Mapping[str, Mapping[str, float]],
    threshold: float,
    study_tasks: Mapping[str, tuple[TaskType, float]] | None = None,
    views: Sequence[str] = (),
    not_analysed: Sequence[str] = (),
) -> str:
    """The template report of one analysed study, one sentence per line.

    `segments` maps segment keys to their outputs (see `describe_predicted_segment`), in report order; segments with a
    finding at or above `threshold` get a sentence, the others one closing line. `study_tasks` maps study-level tasks
    to (type, output). `views` lists the view of each video analysed; `not_analysed` describes the files left out.
    """
    lines = []
    if segments:
        sentences = [describe_predicted_segment(key, outputs, threshold) for key, outputs in segments.items()]
        found = [sentence for sentence in sentences if sentence is not None]
        lines.extend(found)
        rest = len(segments) - len(found)
        if not found:
            lines.append(f"No significant stenosis (no finding reaches P >= {threshold:.2f}).")
        elif rest:
            plural = "s" * (rest != 1)
            lines.append(f"No significant finding in the other {rest} segment{plural} (P < {threshold:.2f}).")
    for task, (task_type, value) in (study_tasks or {}).items():
        lines.append(describe_study_prediction(task, value, task_type, threshold))
    if views:
        lines.append(f"Views analysed ({len(views)} video{'s' * (len(views) != 1)}): {', '.join(views)}.")
    if not_analysed:
        lines.append(f"Files not analysed ({len(not_analysed)}): {', '.join(not_analysed)}.")
    return "\n".join(lines)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _truthy(value) -> bool:
    return not _is_missing(value) and bool(value)


# --------------------------------------------------------------------------------------------------------------
# Disease change between serial studies (paper, Methods: embedding distance and progression)
# --------------------------------------------------------------------------------------------------------------
PROGRESSION_GROUPS: tuple[str, ...] = ("stable", "progressed", "improved")


def classify_progression(previous: Mapping[str, float], current: Mapping[str, float]) -> str:
    """Change between two consecutive studies of a patient, by the paper's rules.

    Both mappings give stenosis % per segment key; segments missing (or NaN) in either study are not compared.
    "progressed": some segment shows a new stenosis > 50 % or worsens by >= 20 points; otherwise "improved": some
    segment improves by >= 20 points; otherwise "stable" (no segment changes by 20 points or more).
    """
    improved = False
    for key, before in previous.items():
        after = current.get(key)
        if _is_missing(before) or _is_missing(after):
            continue
        before, after = float(before), float(after)
        if (after > 50.0 >= before) or after - before >= 20.0:
            return "progressed"
        if before - after >= 20.0:
            improved = True
    return "improved" if improved else "stable"


# --------------------------------------------------------------------------------------------------------------
# Zero-shot prompts
# --------------------------------------------------------------------------------------------------------------
FINDING_PHRASES: dict[str, str] = {
    "normal": "no significant stenosis",
    "mild": "a mild stenosis",
    "moderate": "a moderate stenosis",
    "severe": "a severe stenosis",
    "cto": "a chronic total occlusion",
    "thrombus": "a thrombus",
    "calcification": "moderate or severe calcification",
}
PROMPT_TEMPLATES: tuple[str, ...] = (
    "The {segment} has {finding}.",
    "{Segment}: {finding}.",
)


def zero_shot_prompts(segment: str, findings: tuple[str, ...] = tuple(FINDING_PHRASES)) -> dict[str, list[str]]:
    """Prompt sentences per finding for one segment, e.g. {"severe": ["The proximal LAD has a severe stenosis.", ...]}."""
    name = SEGMENT_BY_KEY[segment].name
    return {
        finding: [t.format(segment=name, Segment=_sentence_case(name), finding=FINDING_PHRASES[finding]) for t in PROMPT_TEMPLATES]
        for finding in findings
    }


__all__ = [
    "CALCIFICATION_GRADES",
    "FINDING_PHRASES",
    "LABEL_COLUMNS",
    "LVEF_TASKS",
    "MACE_TASKS",
    "PREDICTED_CALCIFICATION",
    "PROGRESSION_GROUPS",
    "PROMPT_TEMPLATES",
    "SEGMENTS",
    "SEGMENT_BY_KEY",
    "SEGMENT_FINDINGS",
    "SEGMENT_KEYS",
    "SEGMENT_TASKS",
    "SIGNIFICANT_STENOSIS",
    "TASK_COLUMN_NAMES",
    "TASK_DISPLAY_NAMES",
    "TERRITORIES",
    "VIEWS",
    "VIEW_ANGLES",
    "Segment",
    "build_report",
    "classify_progression",
    "classify_view",
    "describe_predicted_segment",
    "describe_segment",
    "describe_study_prediction",
    "head_names",
    "label_column",
    "prediction_report",
    "segments_for_territory",
    "stenosis_grade",
    "zero_shot_prompts",
]
