"""SpatialLM layouts: parse the text, turn entities into boxes and planes, IoU, and match per class.

The format is SpatialLM's (manycore-research/SpatialLM ``spatiallm/layout/entity.py`` and
``layout.py``), one entity per line, all lengths in metres::

    wall_0=Wall(ax,ay,az,bx,by,bz,height,thickness)
    door_0=Door(wall_0,position_x,position_y,position_z,width,height)
    window_0=Window(wall_0,position_x,position_y,position_z,width,height)
    bbox_0=Bbox(class_name,position_x,position_y,position_z,angle_z,scale_x,scale_y,scale_z)

Geometry and IoU follow SpatialLM's ``eval.py``:
- walls, doors and windows are thin (SpatialLM writes walls with thickness 0), so they are
  vertical rectangles and compared by 2D IoU in the plane: two rectangles overlap only when their
  planes are parallel within 5° and less than 0.2 m apart; then both are projected onto the
  reference's plane. A wall runs a→b from its base up ``height``; a door/window is centred on its
  position, ``width`` along its wall's direction and ``height`` tall;
- a Bbox is an oriented 3D box: centre, yaw ``angle_z`` about z, full extents ``scale_*``, each at
  least 0.1 m (eval.py's ``assign_minimum_scale``); 3D IoU = footprint-polygon intersection × z
  overlap over the union of volumes;
- per class, predictions are matched one-to-one to references with IoU ≥ threshold so that the
  number of matches is largest (Hungarian, ``scipy.optimize.linear_sum_assignment``, as eval.py).

Deliberate differences from the eval.py read (a fork of the official repository): a door/window
takes the direction of the wall it names (eval.py looks the wall up by the door's own id), the
plane distance is absolute (eval.py's signed test lets a far wall behind pass), and a pair at
exactly the threshold counts. The convex polygon intersection is Sutherland–Hodgman clipping
(exact for convex polygons; shapely is not installed here); the tests cross-check it against scipy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

Vec = tuple[float, float, float]
Poly = list[tuple[float, float]]

LAYOUT_CLASSES = ("wall", "door", "window")
PARALLEL_TOLERANCE = math.sin(math.radians(5))
DISTANCE_TOLERANCE = 0.2  # metres
MIN_SCALE = 0.1  # metres
EPS = 1e-9
LINE = re.compile(r"^\s*([A-Za-z]+)_(\d+)\s*=\s*([A-Za-z]+)\s*\((.*)\)\s*;?\s*$")
WALL_REF = re.compile(r"^\s*wall_(\d+)\s*$")


@dataclass(frozen=True)
class Wall:
    a: Vec
    b: Vec
    height: float
    thickness: float


@dataclass(frozen=True)
class Opening:
    kind: str  # "door" or "window"
    wall_id: int
    center: Vec
    width: float
    height: float


@dataclass(frozen=True)
class Object3D:
    class_name: str
    center: Vec
    angle_z: float
    scale: Vec


@dataclass
class Layout:
    walls: dict[int, Wall] = field(default_factory=dict)
    openings: list[Opening] = field(default_factory=list)
    objects: list[Object3D] = field(default_factory=list)
    malformed: int = 0  # non-blank lines that are not an entity


def _floats(params: list[str]) -> list[float]:
    values = [float(p) for p in params]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("non-finite number")
    return values


def class_key(name: str) -> str:
    """An object's class as matched: lowercase, '_' as space; prefixed where it would collide."""
    key = " ".join(name.replace("_", " ").lower().split())
    return f"bbox:{key}" if key in LAYOUT_CLASSES else key


def _entity(layout: Layout, label: str, entity_id: int, params: list[str]) -> None:
    """Add one entity; ValueError when its parameters are not the format's."""
    if label == "wall" and len(params) == 8:
        v = _floats(params)
        layout.walls[entity_id] = Wall((v[0], v[1], v[2]), (v[3], v[4], v[5]), v[6], v[7])
    elif label in ("door", "window") and len(params) == 6 and (ref := WALL_REF.match(params[0])):
        v = _floats(params[1:])
        layout.openings.append(Opening(label, int(ref.group(1)), (v[0], v[1], v[2]), v[3], v[4]))
    elif label == "bbox" and len(params) == 8 and params[0].strip():
        v = _floats(params[1:])
        scale = (max(abs(v[4]), MIN_SCALE), max(abs(v[5]), MIN_SCALE), max(abs(v[6]), MIN_SCALE))
        layout.objects.append(Object3D(class_key(params[0]), (v[0], v[1], v[2]), v[3], scale))
    else:
        raise ValueError(f"not a {label} entity")


def parse_layout(text: str) -> Layout:
    """Every entity line of a layout; other non-blank lines (code fences aside) count as malformed."""
    layout = Layout()
    for line in str(text).splitlines():
        if not line.strip() or line.strip().startswith("```"):
            continue
        match = LINE.match(line)
        label = match.group(1).lower() if match else ""
        if match is None or label != match.group(3).lower() or label not in (*LAYOUT_CLASSES, "bbox"):
            layout.malformed += 1
            continue
        try:
            _entity(layout, label, int(match.group(2)), [p.strip() for p in match.group(4).split(",")])
        except ValueError:
            layout.malformed += 1
    return layout


# --- vectors and convex polygons ----------------------------------------------------------------

def _sub(p: Vec, q: Vec) -> Vec:
    return (p[0] - q[0], p[1] - q[1], p[2] - q[2])


def _dot(p: Vec, q: Vec) -> float:
    return p[0] * q[0] + p[1] * q[1] + p[2] * q[2]


def _cross(p: Vec, q: Vec) -> Vec:
    return (p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0])


def _norm(p: Vec) -> float:
    return math.sqrt(_dot(p, p))


def _unit(p: Vec) -> Vec:
    n = _norm(p)
    return (p[0] / n, p[1] / n, p[2] / n)


def polygon_area(poly: Poly) -> float:
    """Signed shoelace area: positive for counter-clockwise vertices."""
    return 0.5 * sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]))


def _ccw(poly: Poly) -> Poly:
    return poly if polygon_area(poly) >= 0 else poly[::-1]


def _side(a: tuple[float, float], b: tuple[float, float], p: tuple[float, float]) -> float:
    """Positive when p lies left of the directed edge a→b (inside a counter-clockwise polygon)."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def clip_convex(subject: Poly, clip: Poly) -> Poly:
    """Sutherland–Hodgman: the part of `subject` inside the convex counter-clockwise `clip`."""
    out = subject
    for a, b in zip(clip, clip[1:] + clip[:1]):
        if not out:
            break
        points, out = out, []
        for current, following in zip(points, points[1:] + points[:1]):
            s_cur, s_next = _side(a, b, current), _side(a, b, following)
            if s_cur >= 0:
                out.append(current)
            if (s_cur >= 0) != (s_next >= 0):
                t = s_cur / (s_cur - s_next)
                out.append((current[0] + t * (following[0] - current[0]), current[1] + t * (following[1] - current[1])))
    return out


def convex_intersection_area(p: Poly, q: Poly) -> float:
    """Area of the intersection of two convex polygons (any vertex order)."""
    p, q = _ccw(p), _ccw(q)
    if abs(polygon_area(p)) <= EPS or abs(polygon_area(q)) <= EPS:
        return 0.0
    inter = clip_convex(p, q)
    return abs(polygon_area(inter)) if len(inter) >= 3 else 0.0


def polygon_iou(p: Poly, q: Poly) -> float:
    inter = convex_intersection_area(p, q)
    union = abs(polygon_area(p)) + abs(polygon_area(q)) - inter
    return inter / union if union > EPS else 0.0


# --- entities as planes and boxes ---------------------------------------------------------------

def wall_valid(wall: Wall) -> bool:
    """eval.py's ``is_valid_wall``: the wall has extent in x or y."""
    return abs(wall.b[0] - wall.a[0]) > 1e-6 or abs(wall.b[1] - wall.a[1]) > 1e-6


def wall_corners(wall: Wall) -> list[Vec]:
    (ax, ay, az), (bx, by, bz), h = wall.a, wall.b, wall.height
    return [(ax, ay, az), (bx, by, bz), (bx, by, bz + h), (ax, ay, az + h)]


def opening_corners(opening: Opening, wall: Wall) -> list[Vec]:
    """The door/window rectangle: centred on its position, along its wall, `height` tall."""
    dx, dy = wall.b[0] - wall.a[0], wall.b[1] - wall.a[1]
    length = math.hypot(dx, dy)
    ux, uy = (dx / length, dy / length) if length > 0 else (0.0, 0.0)
    cx, cy, cz = opening.center
    ox, oy, oz = 0.5 * ux * opening.width, 0.5 * uy * opening.width, 0.5 * opening.height
    return [(cx - ox, cy - oy, cz - oz), (cx + ox, cy + oy, cz - oz), (cx + ox, cy + oy, cz + oz),
            (cx - ox, cy - oy, cz + oz)]


def plane_iou(pred: list[Vec], ref: list[Vec]) -> float:
    """2D IoU of two thin rectangles: 0 unless parallel (5°) and close (0.2 m), else in `ref`'s plane."""
    n1 = _cross(_sub(pred[1], pred[0]), _sub(pred[2], pred[0]))
    n2 = _cross(_sub(ref[1], ref[0]), _sub(ref[2], ref[0]))
    l1, l2 = _norm(n1), _norm(n2)
    if l1 * l2 <= EPS:
        return 0.0
    if _norm(_cross(n1, n2)) / (l1 * l2) >= PARALLEL_TOLERANCE:
        return 0.0
    if abs(_dot(_sub(ref[0], pred[0]), n1)) / l1 >= DISTANCE_TOLERANCE:
        return 0.0
    e1, v2 = _unit(_sub(ref[1], ref[0])), _sub(ref[3], ref[0])
    along = _dot(v2, e1)
    e2 = _unit((v2[0] - along * e1[0], v2[1] - along * e1[1], v2[2] - along * e1[2]))

    def project(points: list[Vec]) -> Poly:
        return [(_dot(_sub(p, ref[0]), e1), _dot(_sub(p, ref[0]), e2)) for p in points]

    return polygon_iou(project(pred), project(ref))


def footprint(obj: Object3D) -> Poly:
    """The box's floor rectangle, counter-clockwise: local corners rotated by angle_z."""
    (cx, cy, _), (sx, sy, _) = obj.center, obj.scale
    c, s = math.cos(obj.angle_z), math.sin(obj.angle_z)
    local = [(-sx / 2, -sy / 2), (sx / 2, -sy / 2), (sx / 2, sy / 2), (-sx / 2, sy / 2)]
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in local]


def box_iou_3d(a: Object3D, b: Object3D) -> float:
    """3D IoU of two boxes rotated about z: footprint intersection × z overlap over the union."""
    za = (a.center[2] - a.scale[2] / 2, a.center[2] + a.scale[2] / 2)
    zb = (b.center[2] - b.scale[2] / 2, b.center[2] + b.scale[2] / 2)
    dz = min(za[1], zb[1]) - max(za[0], zb[0])
    inter = convex_intersection_area(footprint(a), footprint(b)) * dz if dz > 0 else 0.0
    union = math.prod(a.scale) + math.prod(b.scale) - inter
    return inter / union if union > EPS else 0.0


# --- per-class matching ---------------------------------------------------------------------------

@dataclass
class Shapes:
    """A layout's comparable shapes per class, and what could not become one."""

    planes: dict[str, list[list[Vec]]] = field(default_factory=dict)
    boxes: dict[str, list[Object3D]] = field(default_factory=dict)
    orphans: int = 0  # doors/windows naming a wall the layout lacks
    degenerate: int = 0  # walls without extent in x/y, and the openings on them


def shapes_of(layout: Layout) -> Shapes:
    """Walls and openings as planes, objects as boxes, grouped by class (eval.py's validity filters)."""
    out = Shapes(planes={c: [] for c in LAYOUT_CLASSES})
    for wall in layout.walls.values():
        if wall_valid(wall):
            out.planes["wall"].append(wall_corners(wall))
        else:
            out.degenerate += 1
    for opening in layout.openings:
        wall = layout.walls.get(opening.wall_id)
        if wall is None:
            out.orphans += 1
        elif not wall_valid(wall):
            out.degenerate += 1
        else:
            out.planes[opening.kind].append(opening_corners(opening, wall))
    for obj in layout.objects:
        out.boxes.setdefault(obj.class_name, []).append(obj)
    return out


def iou_matrix(pred: Shapes, ref: Shapes, cls: str) -> list[list[float]]:
    """IoU of every predicted shape of a class (rows) with every reference shape (columns)."""
    if cls in LAYOUT_CLASSES:
        rows, cols = pred.planes.get(cls, []), ref.planes.get(cls, [])
        return [[plane_iou(p, r) for r in cols] for p in rows]
    boxes_p, boxes_r = pred.boxes.get(cls, []), ref.boxes.get(cls, [])
    return [[box_iou_3d(p, r) for r in boxes_r] for p in boxes_p]


def match_count(matrix: list[list[float]], threshold: float) -> int:
    """The most one-to-one pairs with IoU ≥ threshold (Hungarian on the hit matrix)."""
    if not matrix or not matrix[0]:
        return 0
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    hits = np.asarray(matrix, dtype=float) >= threshold
    rows, cols = linear_sum_assignment(hits, maximize=True)
    return int(hits[rows, cols].sum())


Counts = dict[str, dict[float, tuple[int, int, int]]]


def class_counts(pred: Shapes, ref: Shapes, thresholds: tuple[float, ...]) -> Counts:
    """class → threshold → (true positives, predictions, references), for classes either side has."""
    classes = [c for c in LAYOUT_CLASSES if pred.planes.get(c) or ref.planes.get(c)]
    classes += sorted(set(pred.boxes) | set(ref.boxes))
    out: Counts = {}
    for cls in classes:
        matrix = iou_matrix(pred, ref, cls)
        n_pred = len(matrix)
        n_ref = len(ref.planes.get(cls, [])) if cls in LAYOUT_CLASSES else len(ref.boxes.get(cls, []))
        out[cls] = {t: (match_count(matrix, t), n_pred, n_ref) for t in thresholds}
    return out


def prf(tp: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    """Precision, recall and F1 as eval.py's ``EvalTuple``: 0 where a denominator is 0."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1
