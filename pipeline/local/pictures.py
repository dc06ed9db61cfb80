"""Pictures of a finished local execution: training curves, confusion matrix, pipeline graph.

`draw(execution_dir)` writes into `<store>/executions/<id>/pictures/`:

- `training_curves.png`: loss and accuracy per epoch, train and valid, of every Training
  step, read from the `history.json` that train.py leaves in the job's `output.tar.gz`; the
  tuning trials' valid accuracy as thin lines when their histories are in the store.
- `confusion_matrix.png`: the one evaluate.py wrote, copied from the Processing output
  that holds it.
- `pipeline_graph.png`: the definition's steps by dependency depth, edges, the condition's
  true/false branches, each step coloured by its status in the record.

Everything is found from record.json and the definition.json saved beside it (step types,
properties, output URIs), not from step names. A picture with nothing to draw from is skipped
with a message. matplotlib (the `[local]` extra) is imported when drawing starts, and only
its object-oriented API with the Agg canvas is used: no pyplot state, no display.
`run-local` draws them after every run, failed and resumed ones included.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import tarfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed_jobs import contract
from pipeline.definition_json import sorter
from pipeline.local.plan import DefinitionError, Node, check_definition
from pipeline.local.records import DONE
from pipeline.local.store import Store, StoreError, join_uri

log = logging.getLogger("pipeline.local")

PICTURES_DIR = "pictures"
TRAINING_CURVES = "training_curves.png"
# The name evaluate.py gives the picture, kept for the copy.
CONFUSION_MATRIX = contract.CONFUSION_MATRIX_FILE
PIPELINE_GRAPH = "pipeline_graph.png"
HISTORY_FILE = contract.HISTORY_FILE
TRAINING_OUTPUT_ARCHIVE = contract.OUTPUT_ARCHIVE

NOT_RUN = "not run"
# (face, edge) per step status; "not run" is a step of the definition absent from the record.
STATUS_COLOURS = {
    "Succeeded": ("#c8e6c9", "#2e7d32"),
    "Cached": ("#bbdefb", "#1565c0"),
    "Failed": ("#ffcdd2", "#c62828"),
    "Skipped": ("#eeeeee", "#9e9e9e"),
    "Executing": ("#ffe0b2", "#ef6c00"),
    NOT_RUN: ("#ffffff", "#9e9e9e"),
}
LEGEND_STATUSES = ("Succeeded", "Cached", "Failed", "Skipped", NOT_RUN)


def status_colours(status: str | None) -> tuple[str, str]:
    """(face, edge) colour of a step with this record status (None: the step never ran)."""
    return STATUS_COLOURS.get(status or NOT_RUN, STATUS_COLOURS[NOT_RUN])


class Skipped(Exception):
    """This execution has nothing to draw the picture from; the message says what is missing."""


@dataclass
class Execution:
    dir: Path
    record: dict
    definition: dict | None
    store: Store

    @property
    def steps(self) -> list[dict]:
        return self.record.get("Steps") or []

    def steps_of_type(self, step_type: str) -> list[dict]:
        return [step for step in self.steps if step.get("StepType") == step_type]


@dataclass
class Pictures:
    folder: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_execution(execution_dir: Path) -> Execution:
    execution_dir = Path(execution_dir).absolute()
    record = json.loads((execution_dir / "record.json").read_text(encoding="utf-8"))
    # The copy beside the record first: the store may have moved since DefinitionPath was written.
    candidates = [execution_dir / "definition.json"]
    if record.get("DefinitionPath"):
        candidates.append(Path(record["DefinitionPath"]))
    definition = None
    for path in candidates:
        if path.is_file():
            definition = json.loads(path.read_text(encoding="utf-8"))
            break
    return Execution(execution_dir, record, definition, Store(execution_dir.parent.parent))


def draw(execution_dir: Path, out_dir: Path | None = None, dpi: int = 100) -> Pictures:
    """Write the pictures of one execution; one that cannot be drawn never stops the others."""
    execution = load_execution(execution_dir)
    folder = Path(out_dir) if out_dir is not None else execution.dir / PICTURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    pictures = Pictures(folder)
    painters: list[tuple[str, Callable[[Execution, Path, int], None]]] = [
        (TRAINING_CURVES, training_curves),
        (CONFUSION_MATRIX, confusion_matrix),
        (PIPELINE_GRAPH, pipeline_graph),
    ]
    for name, painter in painters:
        target = folder / name
        # A picture left from an earlier drawing would pass for this execution's.
        target.unlink(missing_ok=True)
        try:
            painter(execution, target, dpi)
        except Skipped as reason:
            pictures.skipped.append(f"{name}: {reason}")
            log.info("picture %s skipped: %s", name, reason)
        except Exception as err:
            target.unlink(missing_ok=True)
            pictures.skipped.append(f"{name}: {type(err).__name__}: {err}")
            log.warning("could not draw %s: %s: %s", name, type(err).__name__, err)
        else:
            pictures.written.append(target)
    return pictures


def draw_after_run(record_path: Path) -> Pictures | None:
    """The run's pictures, logged; never raises, because a picture is not worth a failed run."""
    try:
        pictures = draw(Path(record_path).parent)
    except Exception as err:
        log.warning("no pictures of this execution: %s: %s", type(err).__name__, err)
        return None
    if pictures.written:
        names = ", ".join(path.name for path in pictures.written)
        log.info("pictures: %s (%s)", pictures.folder, names)
    return pictures


# ------------------------------------------------------------------ training curves


@dataclass
class History:
    label: str
    epochs: list[dict]
    hyperparameters: dict


def _read_history(store: Store, output_uri: str) -> dict | None:
    """history.json from a training job's output.tar.gz, or None when it has none."""
    try:
        archive = store.path(output_uri)
    except StoreError:
        return None
    if not archive.is_file():
        return None
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == HISTORY_FILE:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return json.load(io.TextIOWrapper(extracted, encoding="utf-8"))
    return None


def _output_uri(output_path: str, job_name: str) -> str:
    # SageMaker's layout for a training job's SM_OUTPUT_DATA_DIR, as training_job.py mirrors it.
    return join_uri(output_path, job_name, "output", TRAINING_OUTPUT_ARCHIVE)


def _epochs(history: dict | None) -> list[dict]:
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
        return []
    return [epoch for epoch in history["epochs"] if isinstance(epoch, dict) and "epoch" in epoch]


def training_histories(execution: Execution) -> tuple[list[History], list[str]]:
    """Histories of the Training steps, and a note for each step without one."""
    histories, missing = [], []
    for step in execution.steps_of_type("Training"):
        properties = step.get("Properties") or {}
        job = properties.get("TrainingJobName")
        output_path = (properties.get("OutputDataConfig") or {}).get("S3OutputPath")
        if step.get("Status") not in DONE or not job or not output_path:
            missing.append(f"{step['StepName']} is {step.get('Status')}")
            continue
        uri = _output_uri(output_path, job)
        history = _read_history(execution.store, uri)
        epochs = _epochs(history)
        if not epochs:
            missing.append(f"no {HISTORY_FILE} with epochs in {uri}")
            continue
        label = step.get("DisplayName") or step["StepName"]
        histories.append(History(f"{label} ({job})", epochs, history.get("hyperparameters") or {}))
    return histories, missing


def trial_histories(execution: Execution) -> tuple[list[History], str | None]:
    """(the tuning trials' histories found in the store, the best trial's job name)."""
    trials, best = [], None
    for step in execution.steps_of_type("Tuning"):
        properties = step.get("Properties") or {}
        best = (properties.get("BestTrainingJob") or {}).get("TrainingJobName") or best
        definition = properties.get("TrainingJobDefinition") or {}
        output_path = (definition.get("OutputDataConfig") or {}).get("S3OutputPath")
        if not isinstance(output_path, str):
            continue
        for trial in step.get("Trials") or []:
            job = trial.get("TrainingJobName")
            if not job:
                continue
            history = _read_history(execution.store, _output_uri(output_path, job))
            epochs = _epochs(history)
            if epochs:
                trials.append(History(job, epochs, history.get("hyperparameters") or {}))
    return trials, best


def _series(epochs: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [
        (float(epoch["epoch"]), float(epoch[key]))
        for epoch in epochs
        if isinstance(epoch.get(key), (int, float)) and math.isfinite(epoch[key])
    ]
    return [x for x, _ in points], [y for _, y in points]


def _hyperparameter_line(hyperparameters: dict) -> str:
    shown = [
        ("learning_rate", "lr {:g}"),
        ("batch_size", "batch {}"),
        ("optimizer", "{}"),
        ("image_size", "{} px"),
    ]
    return " · ".join(
        template.format(hyperparameters[key])
        for key, template in shown
        if hyperparameters.get(key) not in (None, "")
    )


def training_curves(execution: Execution, target: Path, dpi: int) -> None:
    if not execution.steps_of_type("Training"):
        raise Skipped("the execution has no Training step")
    histories, missing = training_histories(execution)
    if not histories:
        raise Skipped("; ".join(missing))
    trials, best = trial_histories(execution)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = Figure(figsize=(11, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    several = len(histories) > 1
    linestyles = ("-", "--", ":", "-.")
    losses: list[float] = []
    for index, history in enumerate(histories):
        style = linestyles[index % len(linestyles)]
        prefix = f"{history.label.split(' (')[0]}: " if several else ""
        for split, colour, marker in (("train", "C0", "o"), ("valid", "C1", "s")):
            xs, ys = _series(history.epochs, f"{split}_loss")
            losses += ys
            loss_axes.plot(xs, ys, style, color=colour, marker=marker, ms=4, label=prefix + split)
            xs, ys = _series(history.epochs, f"{split}_accuracy")
            accuracy_axes.plot(
                xs, ys, style, color=colour, marker=marker, ms=4, label=prefix + split
            )
    for trial in trials:
        xs, ys = _series(trial.epochs, "valid_accuracy")
        is_best = trial.label == best
        accuracy_axes.plot(
            xs,
            ys,
            color="0.25" if is_best else "0.5",
            lw=1.0 if is_best else 0.8,
            ls="--" if is_best else "-",
            alpha=0.9 if is_best else 0.7,
            # The best trial on top: the training step repeats its hyperparameters, so its
            # valid curve can lie exactly under the training step's.
            zorder=3 if is_best else 1,
            label="best tuning trial, valid" if is_best else None,
        )
    others = sum(trial.label != best for trial in trials)
    if others:
        # One legend entry for all trials: a line per trial would drown the training curves.
        label = "other tuning trials" if others < len(trials) else "tuning trials"
        accuracy_axes.plot([], [], color="0.5", lw=0.8, label=f"{label}, valid ({others})")

    positive = [value for value in losses if value > 0]
    # Early validation losses can be orders of magnitude above the rest (a fresh head on
    # large logits); on a linear axis every later epoch would sit flat on zero.
    if positive and len(positive) == len(losses) and max(positive) / min(positive) > 30:
        loss_axes.set_yscale("log")
        loss_axes.set_ylabel("cross-entropy loss (log scale)")
    else:
        loss_axes.set_ylabel("cross-entropy loss")
    loss_axes.set_title("loss")
    accuracy_axes.set_title("accuracy")
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_ylim(-0.02, 1.02)
    accuracy_axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="best")
    title = histories[0].label if not several else f"{len(histories)} training steps"
    details = _hyperparameter_line(histories[0].hyperparameters) if not several else ""
    figure.suptitle(f"Training curves: {title}" + (f"\n{details}" if details else ""), fontsize=11)
    figure.savefig(target, dpi=dpi)


# ------------------------------------------------------------------ confusion matrix


def _evaluation_outputs(execution: Execution) -> list[str]:
    """S3 URIs of the Processing outputs, those a PropertyFile reads from first."""
    declared: dict[str, set[str]] = {}
    if execution.definition is not None:
        try:
            nodes = check_definition(execution.definition)
        except DefinitionError:
            nodes = {}
        for node in nodes.values():
            declared[node.name] = {
                pf.get("OutputName") for pf in node.step.get("PropertyFiles") or []
            }
    first, rest = [], []
    for step in execution.steps_of_type("Processing"):
        if step.get("Status") not in DONE:
            continue
        outputs = ((step.get("Properties") or {}).get("ProcessingOutputConfig") or {}).get(
            "Outputs"
        )
        for output in outputs or []:
            uri = (output.get("S3Output") or {}).get("S3Uri")
            if isinstance(uri, str):
                named = output.get("OutputName") in declared.get(step["StepName"], set())
                (first if named else rest).append(uri)
    return first + rest


def confusion_matrix(execution: Execution, target: Path, dpi: int) -> None:
    for uri in _evaluation_outputs(execution):
        try:
            source = execution.store.path(join_uri(uri, CONFUSION_MATRIX))
        except StoreError:
            continue
        if source.is_file():
            # copyfile, not copy: stored objects are read-only and the picture need not be.
            shutil.copyfile(source, target)
            return
    raise Skipped(f"no Processing output of this execution holds {CONFUSION_MATRIX}")


# -------------------------------------------------------------------- pipeline graph

BOX_HEIGHT = 0.62  # inches
ROW_GAP = 0.42
COLUMN_GAP = 0.35
MARGIN = 0.3
TITLE_HEIGHT = 0.75
NAME_SIZE = 9.5
DETAIL_SIZE = 8


@dataclass
class Edge:
    parent: str
    child: str
    label: str | None  # "true" or "false" into a condition's branch


def graph_edges(nodes: dict[str, Node]) -> list[Edge]:
    """The dependencies without those implied by others (transitive reduction).

    Every step in a branch depends on its condition and on whatever it reads from before
    it; drawing all of that would bury the order in crossing lines.
    """
    ancestors: dict[str, set[str]] = {}
    for name in _order(nodes):
        ancestors[name] = set().union(*({d} | ancestors[d] for d in nodes[name].deps))
    edges = []
    for name, node in nodes.items():
        for dependency in sorted(node.deps):
            implied = any(dependency in ancestors[other] for other in node.deps - {dependency})
            if implied:
                continue
            outcome = dict(node.branches).get(dependency)
            label = None if outcome is None else str(outcome).lower()
            edges.append(Edge(dependency, name, label))
    return edges


def _order(nodes: dict[str, Node]) -> list[str]:
    """The steps in an order where each comes after every step it waits for."""
    return list(sorter({name: node.deps for name, node in nodes.items()}).static_order())


def graph_layout(nodes: dict[str, Node], edges: list[Edge]) -> dict[str, tuple[int, float]]:
    """(row, column) per step: row = longest dependency path, column near its parents."""
    parents: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in edges:
        parents[edge.child].append(edge.parent)
    rows: dict[str, int] = {}
    # The edges are a subset of the dependencies: their order puts parents first.
    for name in _order(nodes):
        rows[name] = 1 + max((rows[parent] for parent in parents[name]), default=-1)

    order = {name: index for index, name in enumerate(nodes)}
    columns: dict[str, float] = {}
    for depth in range(max(rows.values(), default=-1) + 1):
        members = [name for name in nodes if rows[name] == depth]
        # Steps without parents (the first row) side by side in definition order.
        wanted = {
            name: (
                sum(columns[p] for p in parents[name]) / len(parents[name])
                if parents[name]
                else float(index)
            )
            for index, name in enumerate(members)
        }
        members.sort(key=lambda name: (wanted[name], order[name]))
        placed: list[float] = []
        for name in members:
            placed.append(wanted[name] if not placed else max(wanted[name], placed[-1] + 1))
        # Spread siblings evenly around where their parents are, not all to the right.
        shift = sum(wanted[name] for name in members) / len(members) - sum(placed) / len(placed)
        for name, column in zip(members, placed, strict=True):
            columns[name] = column + shift
    return {name: (rows[name], columns[name]) for name in nodes}


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def _box_detail(node: Node, step: dict | None) -> str:
    step = step or {}
    status = step.get("Status") or NOT_RUN
    if node.type == "Condition" and status in DONE and step.get("Properties"):
        # The colour says it ran; the outcome is what a reader wants from a condition.
        return f"{node.type} · {str(step['Properties'].get('Outcome')).lower()}"
    seconds = step.get("Seconds")
    # Registry and endpoint records take milliseconds: "0.0s" would only be noise.
    took = _duration(seconds) if isinstance(seconds, (int, float)) and seconds >= 0.05 else ""
    return " · ".join(part for part in (node.type, status, took) if part)


def _bend(edge: Edge, layout: dict, start: tuple, end: tuple, centre, box_width: float) -> float:
    """The arc3 curvature of an edge: 0 unless the straight line would cross a box on a
    row between its ends; then bent to the side away from that box."""
    (x1, y1), (x2, y2) = start, end
    first, last = layout[edge.parent][0], layout[edge.child][0]
    for name, (row, _) in layout.items():
        if not first < row < last:
            continue
        bx, by = centre(name)
        line_x = x1 + (x2 - x1) * (y1 - by) / (y1 - y2)
        if abs(line_x - bx) < box_width / 2 + 0.25:
            # arc3's control point is the midpoint + rad * (dy, -dx): x moves by rad * dy.
            middle = (x1 + x2) / 2
            return max((0.3, -0.3), key=lambda rad: abs(middle + rad * (y2 - y1) - bx))
    return 0.0


def pipeline_graph(execution: Execution, target: Path, dpi: int) -> None:
    if execution.definition is None:
        raise Skipped("no definition.json beside the record")
    try:
        nodes = check_definition(execution.definition)
    except DefinitionError as err:
        raise Skipped(f"the saved definition cannot be read as a graph: {err}") from None
    if not nodes:
        raise Skipped("the definition has no steps")
    records = {step["StepName"]: step for step in execution.steps}
    edges = graph_edges(nodes)
    layout = graph_layout(nodes, edges)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Polygon

    figure = Figure(figsize=(8, 8))
    canvas = FigureCanvasAgg(figure)
    renderer = canvas.get_renderer()

    def width(text: str, size: float, weight: str = "normal") -> float:
        font = FontProperties(size=size, weight=weight)
        pixels, _, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        return pixels / figure.dpi

    names = {name: node.step.get("DisplayName") or name for name, node in nodes.items()}
    details = {name: _box_detail(node, records.get(name)) for name, node in nodes.items()}
    box_width = max(
        1.7,
        *(width(text, NAME_SIZE, "bold") for text in names.values()),
        *(width(text, DETAIL_SIZE) for text in details.values()),
    )
    box_width += 0.45  # padding, and room for the condition's pointed ends
    slot = box_width + COLUMN_GAP
    left = min(column for _, column in layout.values())
    right = max(column for _, column in layout.values())
    depth = max(row for row, _ in layout.values()) + 1
    legend_height = 0.45
    graph_width = (right - left) * slot + box_width
    fig_width = max(graph_width + 2 * MARGIN, 6.4)
    fig_height = (
        TITLE_HEIGHT + depth * (BOX_HEIGHT + ROW_GAP) - ROW_GAP + legend_height + 2 * MARGIN
    )
    figure.set_size_inches(fig_width, fig_height)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, fig_width)
    axes.set_ylim(0, fig_height)
    axes.set_axis_off()

    x0 = (fig_width - graph_width) / 2 + box_width / 2
    top = fig_height - MARGIN - TITLE_HEIGHT - BOX_HEIGHT / 2

    def centre(name: str) -> tuple[float, float]:
        row, column = layout[name]
        return x0 + (column - left) * slot, top - row * (BOX_HEIGHT + ROW_GAP)

    for edge in edges:
        (px, py), (cx, cy) = centre(edge.parent), centre(edge.child)
        status = (records.get(edge.child) or {}).get("Status")
        live = status not in (None, "Skipped")
        start, end = (px, py - BOX_HEIGHT / 2), (cx, cy + BOX_HEIGHT / 2)
        arrow = FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=11,
            color="0.3" if live else "0.65",
            linestyle="-" if live else (0, (4, 3)),
            lw=1.1,
            shrinkA=0,
            shrinkB=1,
            connectionstyle=f"arc3,rad={_bend(edge, layout, start, end, centre, box_width)}",
            zorder=1,
        )
        axes.add_patch(arrow)
        if edge.label is not None:
            # Nearer the condition than the child, clear of the arrow head.
            axes.text(
                start[0] + 0.45 * (end[0] - start[0]),
                start[1] + 0.45 * (end[1] - start[1]),
                edge.label,
                ha="center",
                va="center",
                fontsize=8,
                style="italic",
                color="#2e7d32" if edge.label == "true" else "#c62828",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
                zorder=3,
            )

    statuses_seen = set()
    for name, node in nodes.items():
        x, y = centre(name)
        status = (records.get(name) or {}).get("Status")
        statuses_seen.add(status or NOT_RUN)
        face, edge_colour = status_colours(status)
        dashed = status in (None, "Skipped")
        style = {
            "facecolor": face,
            "edgecolor": edge_colour,
            "linewidth": 1.4,
            "linestyle": (0, (4, 2)) if dashed else "-",
            "zorder": 2,
        }
        half_w, half_h = box_width / 2, BOX_HEIGHT / 2
        if node.type == "Condition":
            point = 0.18
            shape = Polygon(
                [
                    (x - half_w, y),
                    (x - half_w + point, y + half_h),
                    (x + half_w - point, y + half_h),
                    (x + half_w, y),
                    (x + half_w - point, y - half_h),
                    (x - half_w + point, y - half_h),
                ],
                closed=True,
                **style,
            )
        else:
            shape = FancyBboxPatch(
                (x - half_w, y - half_h),
                box_width,
                BOX_HEIGHT,
                boxstyle="round,pad=0,rounding_size=0.1",
                **style,
            )
        axes.add_patch(shape)
        axes.text(
            x,
            y + 0.09,
            names[name],
            ha="center",
            va="center",
            fontsize=NAME_SIZE,
            weight="bold",
            zorder=3,
        )
        axes.text(
            x,
            y - 0.14,
            details[name],
            ha="center",
            va="center",
            fontsize=DETAIL_SIZE,
            color="0.25",
            zorder=3,
        )

    record = execution.record
    heading = f"{record.get('PipelineName', 'pipeline')} · {record.get('PipelineExecutionId', '')}"
    summary = str(record.get("Status") or "")
    took = _seconds_between(record.get("StartTime"), record.get("EndTime"))
    if took is not None:
        summary += f" in {_duration(took)}"
    if record.get("FailureReason"):
        summary += f": {record['FailureReason']}"
    characters = max(40, int(fig_width * 72 / (0.6 * 9)))
    summary = textwrap.shorten(summary, width=characters, placeholder=" …")
    axes.text(
        fig_width / 2,
        fig_height - MARGIN - 0.12,
        heading,
        ha="center",
        va="center",
        fontsize=11,
        weight="bold",
    )
    axes.text(
        fig_width / 2,
        fig_height - MARGIN - 0.42,
        summary,
        ha="center",
        va="center",
        fontsize=9,
        color="0.3",
    )
    shown = [s for s in LEGEND_STATUSES] + sorted(
        s for s in statuses_seen if s not in LEGEND_STATUSES
    )
    handles = [
        Patch(
            facecolor=status_colours(s)[0],
            edgecolor=status_colours(s)[1],
            linestyle="--" if s in (NOT_RUN, "Skipped") else "-",
            label=s,
        )
        for s in shown
    ]
    figure.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, MARGIN / fig_height / 2),
        handlelength=1.6,
        columnspacing=1.2,
    )
    figure.savefig(target, dpi=dpi)


def _seconds_between(start, end) -> float | None:
    from datetime import datetime

    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None
