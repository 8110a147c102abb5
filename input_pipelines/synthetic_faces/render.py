"""Vectorised NumPy rasteriser for the synthetic face model.

One orthographic ray per pixel (the weak-perspective camera of :mod:`.geometry`). Solids are
ellipsoids intersected analytically: the silhouette of an ellipsoid is an exact ellipse whose
implicit value ``g`` gives an anti-aliased coverage ``clip(0.5 - s g / |grad g|, 0, 1)`` (a
first-order signed distance in pixels), and the front depth and normal come from the ray/quadric
root. Parts are drawn in painter's order (body, back hair, head parts by depth, hair shell,
glasses) with a z-buffer test, so intersections and self-occlusion are right from any view.
Decals (eyes, brows, lips, cheeks) are evaluated on the visible head-surface point of each pixel.
Shading is deferred: parts write albedo, normal and specular strength, and one pass at the end
applies half-Lambert diffuse light from one direction plus ambient and a Blinn highlight.

Speed notes: buffers are planar (channel-first) so that per-pixel coverage broadcasts over an
outer axis, every part is evaluated only inside its projected bounding box on full (contiguous)
coordinate grids, and parts that never overlap much are evaluated together along a leading axis.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import numpy as np

from .geometry import (
    PART_LABELS,
    Y0,
    Camera,
    Ellipsoid,
    Expression,
    FaceModel,
    Frame,
    _as_size,
    _table,
    build_face_model,
    landmark_visibility,
    project,
)
from .identity import Identity

F32 = np.float32
# Float32 scalar constants: NumPy handles Python floats in array operations as "weak" scalars,
# which costs noticeably more per call than a float32 scalar.
_0, _1, _HALF = F32(0.0), F32(1.0), F32(0.5)
_SCLERA = np.array([0.93, 0.91, 0.88], F32)
_TEETH = np.array([0.92, 0.9, 0.84], F32)
_MOUTH_IN = np.array([0.28, 0.06, 0.07], F32)
_PUPIL = np.array([0.03, 0.03, 0.03], F32)
_LENS = np.array([0.85, 0.9, 0.95], F32)


def light_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector towards the light (camera frame): azimuth > 0 from the image right, elevation > 0 from above."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (cheaper than np.clip for small arrays)."""
    np.maximum(x, _0, out=x)
    np.minimum(x, _1, out=x)
    return x


def _k(values) -> np.ndarray:
    """Per-member parameters as float32 (K, 1, 1) for broadcasting against (K, h, w) arrays."""
    return np.asarray(values, F32).reshape(-1, 1, 1)


def _inv2(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x2 matrix (np.linalg.inv is slow for tiny matrices)."""
    a, b, c, d = float(m[0, 0]), float(m[0, 1]), float(m[1, 0]), float(m[1, 1])
    return np.array([[d, -b], [-c, a]]) / (a * d - b * c)


@functools.lru_cache(maxsize=16)
def _grid(h: int, w: int, cx: float, cy: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-plane X and Y of every pixel centre, (H, W) float32 each (constant per camera set-up)."""
    xs = ((np.arange(w) - cx) / s).astype(F32)
    ys = (Y0 - (np.arange(h) - cy) / s).astype(F32)
    gx = np.ascontiguousarray(np.broadcast_to(xs[None, :], (h, w)))
    gy = np.ascontiguousarray(np.broadcast_to(ys[:, None], (h, w)))
    gx.setflags(write=False)
    gy.setflags(write=False)
    return gx, gy


# --------------------------------------------------------------------------------------------
# Background.


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_grid: int, denom: float) -> np.ndarray:
    """(n_out, n_grid) smooth-step interpolation weights; resolution independent coordinates."""
    p = (np.arange(n_out) - (n_out - 1) / 2.0) / denom  # about [-0.5, 0.5]
    g = np.clip((p + 0.6) / 1.2, 0.0, 1.0) * (n_grid - 1)
    i0 = np.minimum(np.floor(g).astype(int), n_grid - 2)
    f = g - i0
    f = f * f * (3 - 2 * f)
    m = np.zeros((n_out, n_grid), F32)
    m[np.arange(n_out), i0] = 1 - f
    m[np.arange(n_out), i0 + 1] += f
    m.setflags(write=False)  # cached constant table
    return m


def render_background(identity: Identity, size: tuple[int, int]) -> np.ndarray:
    """The identity's procedural background (H, W, 3) float32; the same picture at every resolution."""
    return np.ascontiguousarray(_background_planar(identity, size).transpose(1, 2, 0))


def _background_planar(identity: Identity, size: tuple[int, int]) -> np.ndarray:
    """Background as a planar (3, H, W) float32 array."""
    h, w = size
    denom = float(min(h, w))
    xs = ((np.arange(w) - (w - 1) / 2.0) / denom).astype(F32)
    ys = ((np.arange(h) - (h - 1) / 2.0) / denom).astype(F32)
    c1, c2 = identity.rgb("bg1"), identity.rgb("bg2")
    ang = math.radians(identity.background_angle)
    ca, sa = F32(math.cos(ang)), F32(math.sin(ang))
    kind = identity.background_kind
    gx, gy = _grid(h, w, (w - 1) / 2.0, (h - 1) / 2.0, denom)
    gy = F32(Y0) - gy  # centred, y down (image rows)
    if kind == 0:  # gradient
        t = gx * (ca * F32(0.9))
        t += gy * (sa * F32(0.9))
        t += F32(0.5)
        _clip01(t)
        t = t * t * (3 - 2 * t)
    elif kind == 1:  # multi-octave value noise
        rng = np.random.default_rng(identity.background_seed)
        t = np.zeros((h, w), F32)
        n0 = 2 + int(identity.background_freq / 3)
        for octave, amp in enumerate((0.6, 0.28, 0.12)):
            n = n0 * (2**octave) + 1
            grid = (amp * rng.random((n, n))).astype(F32)
            t += _interp_matrix(h, n, denom) @ (grid @ _interp_matrix(w, n, denom).T)
        t -= F32(0.5)
        t *= F32(1.8)
        t += F32(0.5)
        _clip01(t)
    elif kind == 2:  # soft stripes
        k = F32(2 * math.pi * identity.background_freq)
        t = gx * (k * ca)
        t += gy * (k * sa)
        np.sin(t, out=t)
        t *= F32(1.6)
        t += F32(0.5)
        _clip01(t)
    else:  # bokeh: soft discs over a gradient
        t = gx * (ca * F32(0.6))
        t += gy * (sa * F32(0.6))
        t += F32(0.5)
        _clip01(t)
    vignette = gx * gx
    vignette += gy * gy
    vignette *= F32(-0.35)
    vignette += F32(1.0)
    d = (c2 - c1).astype(F32)
    img = np.empty((3, h, w), F32)
    for c in range(3):
        np.multiply(t, d[c], out=img[c])
        img[c] += F32(c1[c])
    if kind == 3:
        rng = np.random.default_rng(identity.background_seed)
        for _ in range(6):
            cxy = rng.random(2) - 0.5
            r = 0.05 + 0.12 * rng.random()
            col = np.clip(c2 * 0.5 + 0.6 * rng.random(3), 0, 1).astype(F32)
            x0, x1 = np.searchsorted(xs, [cxy[0] - r, cxy[0] + r])
            y0, y1 = np.searchsorted(ys, [cxy[1] - r, cxy[1] + r])
            if x0 >= x1 or y0 >= y1:
                continue
            dx = gx[y0:y1, x0:x1] - F32(cxy[0])
            dy = gy[y0:y1, x0:x1] - F32(cxy[1])
            a = dx * dx
            a += dy * dy
            a *= F32(-1.0 / (r * r))
            a += _1
            a = np.sqrt(_clip01(a))
            a *= F32(0.35)
            sub = img[:, y0:y1, x0:x1]
            sub += a[None] * (col[:, None, None] - sub)
    img *= vignette[None]
    return img


# --------------------------------------------------------------------------------------------
# Canvas.


class _Canvas:
    """Planar deferred-shading buffers: albedo (3, H, W), normal (3, H, W), [specular, lit] (2, H, W), depth."""

    def __init__(self, size: tuple[int, int], camera: Camera, light: np.ndarray, ambient: float, labels: bool):
        h, w = size
        self.h, self.w = h, w
        self.cam = camera
        self.s = camera.s
        self.gx, self.gy = _grid(h, w, camera.cx, camera.cy, camera.s)
        self.light = light
        half = light + np.array([0.0, 0.0, 1.0])
        self.half = half / np.linalg.norm(half)
        self.ambient = float(ambient)
        self.albedo = np.empty((3, h, w), F32)
        self.normal = np.zeros((3, h, w), F32)
        self.kl = np.zeros((2, h, w), F32)  # specular strength, lit weight (0 = unlit background)
        self.emit = np.zeros((h, w), F32)  # catch-lights
        self.z = np.full((h, w), -np.inf, F32)
        self.labels = np.zeros((h, w), np.uint8) if labels else None
        # Visible head surface (set when the head is drawn): depth and coverage.
        self.head_t = np.zeros((h, w), F32)
        self.head_vis = np.zeros((h, w), F32)

    def bbox(self, cx: float, cy: float, hx: float, hy: float) -> Optional[tuple[int, int, int, int]]:
        """Pixel box (y0, y1, x0, x1) covering camera-plane centre +- half extents, clipped."""
        px = self.cam.cx + self.s * cx
        py = self.cam.cy + self.s * (Y0 - cy)
        x0 = max(int(math.floor(px - self.s * hx)) - 1, 0)
        x1 = min(int(math.ceil(px + self.s * hx)) + 2, self.w)
        y0 = max(int(math.floor(py - self.s * hy)) - 1, 0)
        y1 = min(int(math.ceil(py + self.s * hy)) + 2, self.h)
        if x0 >= x1 or y0 >= y1:
            return None
        return y0, y1, x0, x1

    def composite(self, box, vis, color, normal=None, ks=0.0, depth=None, label=None):
        """Blend ``color`` (3,) or (3, h, w) — and for solids ``normal`` (3,) or (3, h, w), specular
        ``ks`` and ``depth`` — into the box with coverage ``vis`` (h, w)."""
        y0, y1, x0, x1 = box
        v = vis[None]
        alb = self.albedo[:, y0:y1, x0:x1]
        color = np.asarray(color, F32)
        if color.ndim == 1:
            color = color[:, None, None]
        alb += v * (color - alb)
        if normal is not None:
            nb = self.normal[:, y0:y1, x0:x1]
            normal = np.asarray(normal, F32)
            if normal.ndim == 1:
                normal = normal[:, None, None]
            nb += v * (normal - nb)
            kl = self.kl[:, y0:y1, x0:x1]
            ks = np.asarray(ks, F32)
            if ks.ndim == 0:
                kl += v * (np.array([ks, 1.0], F32)[:, None, None] - kl)
            else:
                kl[0] += vis * (ks - kl[0])
                kl[1] += vis * (_1 - kl[1])
        if depth is not None:
            np.copyto(self.z[y0:y1, x0:x1], depth, where=vis > _HALF)
        if label is not None and self.labels is not None:
            np.copyto(self.labels[y0:y1, x0:x1], label, where=vis > _HALF)

    def shade(self) -> np.ndarray:
        """Final planar image: albedo * (ambient + half-Lambert) + Blinn specular + catch-lights."""
        img = self.albedo
        rows = np.flatnonzero(self.kl[1].any(axis=1))
        if rows.size:
            r0, r1 = int(rows[0]), int(rows[-1]) + 1
            lit = self.kl[1, r0:r1]
            nx, ny, nz = self.normal[0, r0:r1], self.normal[1, r0:r1], self.normal[2, r0:r1]
            inv = nx * nx
            inv += ny * ny
            inv += nz * nz
            inv += F32(1e-12)
            np.sqrt(inv, out=inv)
            np.divide(_1, inv, out=inv)
            lx, ly, lz = (F32(v) for v in self.light)
            hx, hy, hz = (F32(v) for v in self.half)
            ndl = nx * lx
            ndl += ny * ly
            ndl += nz * lz
            ndl *= inv
            ndh = nx * hx
            ndh += ny * hy
            ndh += nz * hz
            ndh *= inv
            front = nz * inv
            amb = self.ambient
            diffuse = ndl + F32(0.25)
            diffuse *= F32(0.8 * (1 - amb))
            np.maximum(diffuse, _0, out=diffuse)
            np.minimum(diffuse, F32(1 - amb), out=diffuse)
            np.maximum(front, _0, out=front)
            front *= F32(0.55 * amb)
            shade = diffuse
            shade += front
            shade += F32(0.45 * amb - 1.0)
            shade *= lit
            shade += _1
            _clip01(ndh)
            for _ in range(4):
                ndh *= ndh
            ndl *= F32(4.0)
            spec = _clip01(ndl)
            spec *= ndh
            spec *= self.kl[0, r0:r1]
            spec *= lit
            sub = img[:, r0:r1]
            sub *= shade[None]
            sub += spec[None]
        img += self.emit[None]
        return _clip01(img)


# --------------------------------------------------------------------------------------------
# Solids.


class _CamTable:
    """Camera-frame quadric parameters of all solids of a model, computed once per image."""

    # Column indices into ``p`` (shape (K, 32, 1, 1)).
    C0, C1, C2, M00, M01, M11, QZZ, Q02, Q12, R01, R11, R21, HALF, KS = range(14)
    QN = 14  # 9 entries: normal matrix, row-major
    RI = 23  # 9 entries: camera -> unit-sphere coordinates, row-major

    def __init__(self, cam: Camera, solids: Sequence[Ellipsoid]):
        self.solids = solids
        self.index = {p.name: i for i, p in enumerate(solids)}
        centers, rots, axes, half = _table(solids)
        rigid = np.array([p.rigid for p in solids])
        r = np.where(rigid[:, None, None], np.einsum("ij,kjl->kil", cam.rotation, rots), rots)
        c = np.where(rigid[:, None], centers @ cam.rotation.T, centers) + cam.translation
        a2 = axes * axes
        rt = r.transpose(0, 2, 1)
        sigma = np.einsum("kij,klj->kil", r * a2[:, None, :], r)  # R diag(a^2) R^T (no per-matrix BLAS calls)
        q = np.einsum("kij,klj->kil", r / a2[:, None, :], r)
        det = sigma[:, 0, 0] * sigma[:, 1, 1] - sigma[:, 0, 1] ** 2
        k = len(solids)
        p = np.empty((k, 32), np.float64)
        p[:, 0:3] = c
        p[:, 3], p[:, 4], p[:, 5] = sigma[:, 1, 1] / det, -sigma[:, 0, 1] / det, sigma[:, 0, 0] / det
        p[:, 6], p[:, 7], p[:, 8] = q[:, 2, 2], q[:, 0, 2], q[:, 1, 2]
        p[:, 9], p[:, 10], p[:, 11] = r[:, 0, 1], r[:, 1, 1], r[:, 2, 1]
        p[:, 12] = half
        p[:, 13] = [s.specular for s in solids]
        # Normal Q (p - c) scaled by the smallest axis^2 so parts of different sizes blend sensibly.
        p[:, 14:23] = (q * a2.min(axis=1)[:, None, None]).reshape(k, 9)
        p[:, 23:32] = (rt / axes[:, :, None]).reshape(k, 9)
        self.p = p.astype(F32)[:, :, None, None]
        self.c = c
        self.hx, self.hy = np.sqrt(sigma[:, 0, 0]), np.sqrt(sigma[:, 1, 1])
        self.colors = np.stack([s.color for s in solids]).astype(F32)
        self.labels = np.array([s.label for s in solids], np.uint8)
        self.has_half = half != 0

    def box(self, cv: _Canvas, sel: slice):
        c, hx, hy = self.c[sel], self.hx[sel], self.hy[sel]
        x0, x1 = float((c[:, 0] - hx).min()), float((c[:, 0] + hx).max())
        y0, y1 = float((c[:, 1] - hy).min()), float((c[:, 1] + hy).max())
        return cv.bbox(0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * (x1 - x0), 0.5 * (y1 - y0))


class _Solids:
    """K ellipsoids evaluated together on one pixel box (arrays with a leading K axis).

    For each part and pixel: anti-aliased silhouette coverage ``alpha``, ``inside`` mask, depth
    ``t`` of the front surface, and an unnormalised normal ``n`` (K, 3, h, w).
    """

    def __init__(self, cv: _Canvas, table: _CamTable, sel: slice, box=None):
        self.table, self.sel = table, sel
        self.parts = table.solids[sel]
        if box is None:
            box = table.box(cv, sel)
        self.box = box
        if box is None:
            return
        T = _CamTable
        P = self._params()
        y0, y1, x0, x1 = box
        dx = cv.gx[None, y0:y1, x0:x1] - P(T.C0)  # (K, h, w)
        dy = cv.gy[None, y0:y1, x0:x1] - P(T.C1)
        # Silhouette implicit g = d^T M2 d - 1 (< 0 inside) and its half gradient M2 d.
        m0 = dx * P(T.M00)
        m0 += dy * P(T.M01)
        m1 = dx * P(T.M01)
        m1 += dy * P(T.M11)
        g = dx * m0
        g += dy * m1
        g -= _1
        m0 *= m0
        m1 *= m1
        m0 += m1
        np.sqrt(m0, out=m0)
        m0 += F32(1e-6)
        alpha = g * F32(-0.5 * cv.s)
        alpha /= m0
        alpha += _HALF
        self.alpha = _clip01(alpha)
        self.inside = g < 0
        # Front root of the ray/quadric equation (rays along -z).
        qzz = P(T.QZZ)
        delta = g
        delta *= -qzz  # discriminant, >= 0 inside
        np.maximum(delta, _0, out=delta)
        np.sqrt(delta, out=delta)
        delta -= dx * P(T.Q02)
        delta -= dy * P(T.Q12)
        delta /= qzz
        self.t = delta + P(T.C2)
        self.dx, self.dy, self.delta = dx, dy, delta
        if table.has_half[sel].any():  # half-ellipsoids keep the side of the front point's local y
            ly = dx * P(T.R01)
            ly += dy * P(T.R11)
            ly += delta * P(T.R21)
            ly *= P(T.HALF)
            ok = ly >= _0
            ok |= P(T.HALF) == _0
            self.alpha *= ok
            self.inside &= ok
        n = np.empty((len(self.parts), 3) + dx.shape[1:], F32)
        qn = T.QN
        for i in range(3):
            ni = n[:, i]
            np.multiply(dx, P(qn + 3 * i), out=ni)
            ni += dy * P(qn + 3 * i + 1)
            ni += delta * P(qn + 3 * i + 2)
        self.n = n

    def _params(self):
        """Parameter accessor: float32 scalars for a single part (cheapest), else (K, 1, 1) arrays."""
        p = self.table.p[self.sel]
        if p.shape[0] == 1:
            flat = p[0, :, 0, 0]
            return flat.__getitem__
        return lambda i: p[:, i]

    def unit_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Front surface point in each part's own unit-sphere coordinates (xn, yn, zn)."""
        P, ri = self._params(), _CamTable.RI
        out = []
        for i in range(3):
            c = self.dx * P(ri + 3 * i)
            c += self.dy * P(ri + 3 * i + 1)
            c += self.delta * P(ri + 3 * i + 2)
            out.append(c)
        return tuple(out)

    def composite(
        self, cv: _Canvas, tau: float = 0.03, mask=None, color=None, write_depth: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Z-test against the canvas, resolve occlusion inside the group softly, blend in.

        A part more than ``tau`` behind the front-most part of the group is hidden; within ``tau``
        it blends in (smooth seams where parts meet). Returns the group depth and coverage.
        """
        y0, y1, x0, x1 = self.box
        vis = self.alpha
        vis *= self.t > cv.z[y0:y1, x0:x1]
        if mask is not None:
            vis *= mask
        if color is None:
            color = self.table.colors[self.sel]  # (K, 3)
        ks = self.table.p[self.sel, _CamTable.KS, 0, 0]
        labels = self.table.labels[self.sel]
        if len(self.parts) == 1:
            v, t, n = vis[0], self.t[0], self.n[0]
            col, k, lab = color[0], ks[0], labels[0]
        else:
            neg = F32(-1e9)
            zmax = np.where(self.inside & (vis > 0), self.t, neg).max(axis=0)
            occ = self.t - zmax
            occ *= F32(1.0 / tau)
            occ += _1
            vis *= _clip01(occ)
            wsum = vis.sum(axis=0)
            v = np.minimum(wsum, _1)
            wts = vis / np.maximum(wsum, F32(1e-6))
            if color.ndim == 2:
                col = np.einsum("khw,kc->chw", wts, color)
            else:
                col = np.einsum("khw,kchw->chw", wts, color)
            n = np.einsum("khw,kchw->chw", wts, self.n)
            k = np.einsum("khw,k->hw", wts, ks)
            t = np.where(vis > 0, self.t, neg).max(axis=0)
            lab = labels[np.argmax(vis, axis=0)] if cv.labels is not None else None
        cv.composite(self.box, v, col, n, k, t if write_depth else None, lab)
        return t, v


def _hair_mask(ev: _Solids, cv: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Soft hairline mask and strand texture factor on a (single) hair shell."""
    xn, yn, zn = ev.unit_coords()
    part = ev.parts[0]
    hm = part.hair
    k1 = 0.5 * (hm.y_front - hm.y_back)
    k2 = 0.5 * (hm.y_front + hm.y_back) - hm.y_side
    line = zn * F32(k2)
    line += F32(k1)
    line *= zn
    line += F32(hm.y_side)
    if hm.jag or hm.part:
        front = _clip01(zn.copy())
        if hm.jag:
            jag = xn * F32(hm.jag_freq)
            np.sin(jag, out=jag)
            jag *= front
            jag *= F32(hm.jag)
            line += jag
        if hm.part:
            pt = xn - F32(hm.part)
            np.abs(pt, out=pt)
            pt *= F32(-6.0)
            pt += _1
            _clip01(pt)
            pt *= front
            pt *= F32(0.06)
            line -= pt
    mask = yn - line
    mask *= F32(cv.s * part.axes[1])
    mask += _HALF
    return _clip01(mask), _strands(xn, yn)


def _strands(xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
    """Brightness factor of a hair-strand texture."""
    tex = yn * xn
    tex *= F32(5.0)
    tex += xn * F32(34.0)
    np.sin(tex, out=tex)
    tex *= F32(0.16)
    tex += F32(0.84)
    return tex


def _draw_group(cv: _Canvas, table: _CamTable, sel: slice, tau: float = 0.03, box=None, write_depth: bool = True):
    ev = _Solids(cv, table, sel, box)
    if ev.box is None:
        return None
    mask = color = None
    part = ev.parts[0]
    if len(ev.parts) == 1 and part.hair is not None:
        mask, tex = _hair_mask(ev, cv)
        color = table.colors[sel][:, :, None, None] * tex[:, None]
    elif len(ev.parts) == 1 and part.strands:
        xn, yn, _ = ev.unit_coords()
        color = table.colors[sel][:, :, None, None] * _strands(xn, yn)[:, None]
    t, v = ev.composite(cv, tau, mask, color, write_depth)
    return ev.box, t, v


def _draw_head(cv: _Canvas, table: _CamTable, sel: slice) -> None:
    """Union of the head ellipsoids (smooth normal blend across the seams); keeps the surface for decals."""
    res = _draw_group(cv, table, sel, tau=0.1)
    if res is None:
        return
    (y0, y1, x0, x1), t, v = res
    cv.head_t[y0:y1, x0:x1] = t
    cv.head_vis[y0:y1, x0:x1] = v


# --------------------------------------------------------------------------------------------
# Decals.


def _kk(values):
    """Per-member parameter: a float32 scalar when all members agree (cheap), else (K, 1, 1)."""
    v = np.asarray(values, np.float64).reshape(-1)
    if (v == v[0]).all():
        return F32(v[0])
    return v.astype(F32)[:, None, None]


def _coef(quads) -> tuple:
    """Per-member quadratics ``A + B u + C u^2`` (K, 3) as three :func:`_kk` parameters."""
    q = np.asarray(quads, np.float64).reshape(-1, 3)
    return _kk(q[:, 0]), _kk(q[:, 1]), _kk(q[:, 2])


class _DecalBatch:
    """Decals of K members (e.g. both eyes) on equally sized pixel boxes, evaluated together.

    Member ``k`` has one frame per "frame slot" ``f``; ``self.u[f]``, ``self.v[f]`` are the local
    coordinates of the visible head surface point of each pixel, shape (K, h, w). Painting happens
    on gathered copies of the canvas crops (albedo as (3, K, h, w)), scattered back by
    :meth:`finish`. Anti-aliasing uses the pixel size along ``v`` (``kv``) and ``u`` (``ku``).
    """

    def __init__(
        self,
        cv: _Canvas,
        frames: Sequence[Sequence[Frame]],
        extents: Sequence[tuple[float, float, float, float]],
        mirror: Optional[Sequence[float]] = None,
    ):
        """``frames[f][k]``: frame of slot ``f`` for member ``k``; ``extents[f]``: (u0, u1, v0, v1).

        ``mirror[k]`` (+-1) flips member ``k``'s ``u`` axis, so that mirror-symmetric features
        (left/right eyes) share one set of shape parameters (scalars are much cheaper than
        per-member broadcasts).
        """
        cam = cv.cam
        self.cv = cv
        self.ok = False
        n_slots, n_members = len(frames), len(frames[0])
        # Camera-frame frames, all slots and members at once: (F, K, 4, 3) = centre, e_u, e_v, n.
        m = np.array([[(f.center, f.e_u, f.e_v, f.n) for f in fr_list] for fr_list in frames])
        m = np.einsum("fkaj,ij->fkai", m, cam.rotation)
        m[:, :, 0] += cam.translation
        c, eu, ev, n = m[:, :, 0], m[:, :, 1], m[:, :, 2], m[:, :, 3]
        ext = np.abs(np.array(extents, np.float64))  # (F, 4)
        ru = np.maximum(ext[:, 0], ext[:, 1])[:, None, None]
        rv = np.maximum(ext[:, 2], ext[:, 3])[:, None, None]
        reach = np.maximum(ru, rv)
        sag = reach * reach / 1.2 * np.hypot(n[..., 0:1], n[..., 1:2])  # surface behind the tangent plane
        half = np.abs(eu[..., :2]) * ru + np.abs(ev[..., :2]) * rv + sag  # (F, K, 2)
        lo = (c[..., :2] - half).min(axis=0)  # (K, 2)
        hi = (c[..., :2] + half).max(axis=0)
        # Pixel boxes of a common size.
        s = cv.s
        px0, px1 = cam.cx + s * lo[:, 0], cam.cx + s * hi[:, 0]
        py0, py1 = cam.cy + s * (Y0 - hi[:, 1]), cam.cy + s * (Y0 - lo[:, 1])
        wb = min(int(math.ceil(float((px1 - px0).max()))) + 3, cv.w)
        hb = min(int(math.ceil(float((py1 - py0).max()))) + 3, cv.h)
        onimage = (px1 >= 0) & (px0 <= cv.w) & (py1 >= 0) & (py0 <= cv.h)
        xs0 = [min(max(math.floor(x) - 1, 0), cv.w - wb) if ok else 0 for x, ok in zip(px0.tolist(), onimage.tolist())]
        ys0 = [min(max(math.floor(y) - 1, 0), cv.h - hb) if ok else 0 for y, ok in zip(py0.tolist(), onimage.tolist())]
        self.boxes = boxes = [(int(y), int(y) + hb, int(x), int(x) + wb) for y, x in zip(ys0, xs0)]
        crop = lambda a: np.stack([a[y0:y1, x0:x1] for y0, y1, x0, x1 in boxes])  # noqa: E731 (slices: cheap)
        self.vis = crop(cv.head_vis)
        if not self.vis.any():
            return
        self.ok = True
        self.albedo = np.stack([cv.albedo[:, y0:y1, x0:x1] for y0, y1, x0, x1 in boxes], axis=1)  # (3, K, h, w)
        self.emit = crop(cv.emit)
        self.labels = crop(cv.labels) if cv.labels is not None else None
        # Local coordinates of the visible surface point: u = e_u . (P - c), v = e_v . (P - c).
        pts = np.stack([crop(cv.gx), crop(cv.gy), crop(cv.head_t)])  # (3, K, h, w)
        if mirror is not None:
            eu = eu * np.asarray(mirror, np.float64)[None, :, None]
        ax = np.concatenate([eu, ev], axis=0).astype(F32)  # (2F, K, 3)
        off = np.einsum("gki,gki->gk", ax, np.concatenate([c, c], axis=0).astype(F32))  # (2F, K): e . c
        uv = np.einsum("gki,ikhw->gkhw", ax, pts)  # (2F, K, h, w)
        uv -= off[:, :, None, None]
        self.u = list(uv[:n_slots])
        self.v = list(uv[n_slots:])
        self.uu = [u * u for u in self.u]
        # Pixels per unit of u and v on the tangent plane (projected axis lengths; floored so that
        # planes seen edge-on keep a finite anti-aliasing width).
        ku = (s * np.maximum(np.hypot(eu[..., 0], eu[..., 1]), 0.05)).astype(F32)[:, :, None, None]  # (F, K, 1, 1)
        kv = (s * np.maximum(np.hypot(ev[..., 0], ev[..., 1]), 0.05)).astype(F32)[:, :, None, None]
        self.ku, self.kv = list(ku), list(kv)

    def band(self, f: int, top, bot, u_range=None) -> np.ndarray:
        """Coverage of ``bot(u) <= v <= top(u)`` (per-member quadratics from :func:`_coef`)."""
        u, v, uu, kv = self.u[f], self.v[f], self.uu[f], self.kv[f]
        t0, t1, t2 = top
        b0, b1, b2 = bot
        d1 = uu * t2
        d1 += t0
        if t1.any():
            d1 += u * t1
        np.subtract(v, d1, out=d1)  # > 0 above the top curve
        d2 = uu * b2
        d2 += b0
        if b1.any():
            d2 += u * b1
        d2 -= v  # > 0 below the bottom curve
        d = np.maximum(d1, d2, out=d1)
        d *= kv
        if u_range is not None:
            lo, hi = _kk(u_range[0]), _kk(u_range[1])
            du = np.maximum(lo - u, u - hi)
            du *= self.ku[f]
            np.maximum(d, du, out=d)
        np.subtract(_HALF, d, out=d)
        return _clip01(d)

    def ellipse(self, f: int, cu, cv_, a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coverage of per-member ellipses (parameters (K,) or scalars), the normalised squared
        radius and the normalised radius."""
        a = np.maximum(np.asarray(a, np.float64), 1e-6)
        b = np.maximum(np.asarray(b, np.float64), 1e-6)
        du = self.u[f] - _kk(cu)
        du *= _kk(1.0 / a)
        dv = self.v[f] - _kk(cv_)
        dv *= _kk(1.0 / b)
        du *= du
        dv *= dv
        r2 = du
        r2 += dv
        # Pixel distance ~ (r - 1) * radius * pixels per unit (radius measured along v).
        rad = np.sqrt(r2)
        d = rad - _1
        d *= self.kv[f]
        d *= _kk(b)
        np.subtract(_HALF, d, out=d)
        return _clip01(d), r2, rad

    def paint(self, cover: np.ndarray, color, label: Optional[int] = None) -> None:
        """Blend ``color`` — (3,) or a (3, K, h, w) image — with coverage ``cover`` (K, h, w)."""
        color = np.asarray(color, F32)
        for c in range(3):
            alb = self.albedo[c]
            d = color[c] - alb
            d *= cover
            alb += d
        if label is not None and self.labels is not None:
            self.labels[cover > _HALF] = label

    def finish(self) -> None:
        cv = self.cv
        for k, (y0, y1, x0, x1) in enumerate(self.boxes):
            cv.albedo[:, y0:y1, x0:x1] = self.albedo[:, k]
            cv.emit[y0:y1, x0:x1] = self.emit[k]
            if self.labels is not None:
                cv.labels[y0:y1, x0:x1] = self.labels[k]


def _draw_decals(cv: _Canvas, model: FaceModel) -> None:
    lab = PART_LABELS
    idn = model.identity
    # Both sides together (members: subject's right, left), mirrored so that +u points to the
    # outer side for both: the shapes are then identical scalars. Slots: 0 eye, 1 brow, 2 cheek.
    eyes, brows = model.eyes, model.brows
    sides = [e.side for e in eyes]
    ea, ba, r = eyes[0].a, brows[0].a, model.cheek_radius
    db = _DecalBatch(
        cv,
        [[e.frame for e in eyes], [b.frame for b in brows], list(model.cheeks)],
        [(-1.3 * ea, 1.3 * ea, -0.09, 0.12), (-ba, ba, -0.06, 0.12), (-r, r, -r, r)],
        mirror=sides,
    )
    if db.ok:
        vis = db.vis
        # Cheeks: a soft blush.
        a = db.v[2] * db.v[2]
        a += db.uu[2]
        a *= F32(-1.0 / (r * r))
        a += _1
        _clip01(a)
        a *= a
        a *= vis
        a *= F32(0.22)
        db.paint(a, model.mouth.lip_color)
        # Soft socket shadow around the eye.
        du = db.u[0] * F32(1.0 / (1.3 * ea))
        dv = db.v[0] - F32(0.02)
        dv *= F32(1.0 / 0.085)
        du *= du
        dv *= dv
        sh = du
        sh += dv
        np.subtract(_1, sh, out=sh)
        _clip01(sh)
        sh *= vis
        sh *= F32(-0.16)
        sh += _1
        for c in range(3):
            db.albedo[c] *= sh
        mirror = lambda q, s: (q[0], q[1] * s, q[2])  # noqa: E731  (u -> s u)
        brow_cover = db.band(
            1, _coef([mirror(b.top, s) for b, s in zip(brows, sides)]), _coef([mirror(b.bot, s) for b, s in zip(brows, sides)]),
            (-ba, ba),
        )
        brow_cover *= vis
        brow_cover *= F32(0.92)
        db.paint(brow_cover, brows[0].color, lab["brow"])
        opening = db.band(0, _coef([e.top for e in eyes]), _coef([e.bot for e in eyes]))
        opening *= vis
        db.paint(opening, _SCLERA, lab["eye"])
        if max(e.openness for e in eyes) > 0.05:
            iu = [e.iris_uv[0] * s for e, s in zip(eyes, sides)]
            iv = [e.iris_uv[1] for e in eyes]
            r_iris = eyes[0].r_iris
            open_ = opening * _kk([float(e.openness > 0.05) for e in eyes])
            ia, r2, rad = db.ellipse(0, iu, iv, r_iris, r_iris)
            # Pupil: same centre, radius pupil_size * r_iris (distance from the iris' radius).
            pa = rad - F32(eyes[0].r_pupil / r_iris)
            pa *= db.kv[0]
            pa *= F32(r_iris)
            np.subtract(_HALF, pa, out=pa)
            _clip01(pa)
            pa *= open_
            shade_iris = _clip01(r2)
            shade_iris *= F32(-0.55)
            shade_iris += F32(1.15)
            iris_col = eyes[0].iris_color.astype(F32)[:, None, None, None] * shade_iris[None]
            ia *= open_
            db.paint(ia, iris_col)
            db.paint(pa, _PUPIL)
            # Catch-light up and towards the image right (the same side for both eyes).
            gu = [(e.iris_uv[0] + 0.35 * r_iris) * s for e, s in zip(eyes, sides)]
            ga, _, _ = db.ellipse(0, gu, [v + 0.4 * r_iris for v in iv], 0.26 * r_iris, 0.26 * r_iris)
            ga *= open_
            ga *= F32(0.55)
            np.maximum(db.emit, ga, out=db.emit)
        lo, hi = -ea, ea * 1.12  # the lash line runs a little past the outer corner
        lash = db.band(0, _coef([e.lash_top for e in eyes]), _coef([e.lash_bot for e in eyes]), (lo, hi))
        lash *= vis
        db.paint(lash, idn.rgb("brow") * 0.45)
        db.finish()
    # Mouth: signed v-distances (in pixels) to each curve, computed once.
    m = model.mouth
    db = _DecalBatch(cv, [[m.frame]], [(-m.a - 0.02, m.a + 0.02, m.outer_bot[0] - 0.05, m.outer_top[0] + 0.06)])
    if db.ok:
        vis = db.vis
        u, v, uu, kv = db.u[0], db.v[0], db.uu[0], db.kv[0]

        def below(q):  # > 0 where v is below the curve q(u), in pixels
            d = uu * F32(q[2])
            d += F32(q[0])
            d -= v
            d *= kv
            return d

        def cover(d_top_below, d_bottom_below):  # inside when below the top and above the bottom
            c = np.minimum(d_top_below, -d_bottom_below)
            c += _HALF
            return _clip01(c)

        lip = m.lip_color.astype(F32)
        top, mid, bot = below(m.outer_top), below(m.mid), below(m.outer_bot)
        lips = cover(top, bot)
        lips *= vis
        db.paint(lips, lip, lab["mouth"])
        upper = cover(top, mid)
        upper *= vis
        db.paint(upper, lip * F32(0.86))
        if m.opening > 1e-3:
            itop = below(m.inner_top)
            inner = cover(itop, below(m.inner_bot))
            inner *= vis
            db.paint(inner, _MOUTH_IN)
            teeth = cover(itop, below(m.teeth_bot))
            teeth *= inner
            db.paint(teeth, _TEETH)
        else:  # closed: a dark seam along the mouth line
            seam = np.abs(mid)
            seam *= F32(-1.0)
            seam += F32(0.5 + 0.0045 * float(db.kv[0].reshape(-1)[0]))
            _clip01(seam)
            seam *= upper + lips  # only inside the mouth
            seam *= vis
            seam *= F32(0.4)
            db.paint(seam, lip * F32(0.4))
        hl, _, _ = db.ellipse(0, 0.0, m.outer_bot[0] * 0.55, 0.4 * m.a, 0.35 * abs(m.outer_bot[0] - m.opening) + 1e-3)
        hl *= lips
        hl *= F32(0.25)
        db.paint(hl, np.minimum(lip * 1.5, 1.0))
        db.finish()


def _draw_glasses(cv: _Canvas, model: FaceModel) -> None:
    gl = model.glasses
    cam = cv.cam
    color = gl.color.astype(F32)

    def plane(frame: Frame, extent_u: float, extent_v: float):
        c = cam.to_camera(frame.center, True)
        eu, ev, n = cam.rotation @ frame.e_u, cam.rotation @ frame.e_v, cam.rotation @ frame.n
        if abs(n[2]) < 0.05:
            return None
        corners = np.array([c + a * eu + b * ev for a in (-extent_u, extent_u) for b in (-extent_v, extent_v)])
        lo, hi = corners.min(0), corners.max(0)
        box = cv.bbox(0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), 0.5 * (hi[0] - lo[0]), 0.5 * (hi[1] - lo[1]))
        if box is None:
            return None
        y0, y1, x0, x1 = box
        dx = cv.gx[y0:y1, x0:x1] - F32(c[0])
        dy = cv.gy[y0:y1, x0:x1] - F32(c[1])
        dz = dx * F32(-n[0] / n[2])  # ray/plane intersection
        dz -= dy * F32(n[1] / n[2])
        dec = _DecalBatch.__new__(_DecalBatch)
        u = (dx * F32(eu[0]) + dy * F32(eu[1]) + dz * F32(eu[2]))[None]
        v = (dx * F32(ev[0]) + dy * F32(ev[1]) + dz * F32(ev[2]))[None]
        dec.u, dec.v, dec.uu = [u], [v], [u * u]
        dec.ku = [_k(cv.s * max(math.hypot(eu[0], eu[1]), 0.05))]
        dec.kv = [_k(cv.s * max(math.hypot(ev[0], ev[1]), 0.05))]
        depth = dz + F32(c[2])
        return dec, box, depth, n.astype(F32)

    res = plane(gl.frame, gl.lens_centers[1] + gl.lens_axes[0] + 0.03, gl.lens_axes[1] + 0.03)
    if res is not None:
        dec, box, depth, normal = res
        y0, y1, x0, x1 = box
        front = depth > cv.z[y0:y1, x0:x1]
        la, lb = gl.lens_axes
        rim = lens = None
        for cu in gl.lens_centers:
            outer, _, _ = dec.ellipse(0, cu, 0.0, la, lb)
            inner, _, _ = dec.ellipse(0, cu, 0.0, la - gl.rim, lb - gl.rim)
            ring = outer * (_1 - inner)
            rim = ring if rim is None else np.maximum(rim, ring)
            lens = inner if lens is None else np.maximum(lens, inner)
        br = (F32(gl.bridge_range[0]), F32(gl.bridge_range[1]))
        rim = np.maximum(rim, dec.band(0, _coef(gl.bridge_top), _coef(gl.bridge_bot), br))[0]
        # Faint lens tint, then the frame.
        cv.composite(box, lens[0] * front * F32(0.12), _LENS)
        cv.composite(box, rim * front, color, normal, 0.1, depth, PART_LABELS["glasses"])
    for frame in gl.temples:
        res = plane(frame, 0.5 * gl.temple_length + 0.02, 0.05)
        if res is None:
            continue
        dec, box, depth, normal = res
        y0, y1, x0, x1 = box
        half = 0.5 * gl.temple_length
        bar = dec.band(0, _coef((0.014, 0.0, 0.0)), _coef((-0.014, 0.0, 0.0)), (F32(-half), F32(half)))[0]
        vis = bar * (depth > cv.z[y0:y1, x0:x1])
        cv.composite(box, vis, color, normal, 0.05, depth, PART_LABELS["glasses"])


# --------------------------------------------------------------------------------------------
# Public API.


def _lighting(identity: Identity, lighting, light_frame: str, camera: Camera) -> tuple[np.ndarray, float]:
    if lighting is None:
        az, el, amb = identity.light_azimuth, identity.light_elevation, identity.ambient
    else:
        if len(lighting) != 3:
            raise ValueError(f"lighting must be (azimuth_deg, elevation_deg, ambient), got {lighting!r}")
        az, el, amb = (float(x) for x in lighting)
    d = light_direction(az, el)
    if light_frame == "head":
        d = camera.rotation @ d
    elif light_frame != "camera":
        raise ValueError(f"light_frame must be 'camera' or 'head', got {light_frame!r}")
    return d, min(max(float(amb), 0.0), 1.0)


def render_model(
    model: FaceModel,
    pose: Sequence[float] = (0.0, 0.0, 0.0),
    size: int | Sequence[int] = (128, 128),
    *,
    lighting: Optional[Sequence[float]] = None,
    translation: Sequence[float] = (0.0, 0.0),
    scale: float = 1.0,
    supersample: int = 1,
    light_frame: str = "camera",
    return_labels: bool = False,
    background: Optional[np.ndarray] = None,
):
    """Render a prebuilt :class:`FaceModel` (see :func:`render_face`).

    ``background``: a precomputed :func:`render_background` of the rendering size (``size``
    times ``supersample``) to reuse across frames of one identity.
    """
    h, w = _as_size(size)
    k = int(supersample)
    if k < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample}")
    cam_out = Camera.make(pose, (h, w), translation, scale)
    cam = Camera.make(pose, (h * k, w * k), translation, scale) if k > 1 else cam_out
    light, ambient = _lighting(model.identity, lighting, light_frame, cam)
    cv = _Canvas((h * k, w * k), cam, light, ambient, return_labels)
    if background is None:
        cv.albedo[...] = _background_planar(model.identity, (h * k, w * k))
    elif background.shape != (h * k, w * k, 3):
        raise ValueError(f"background has shape {background.shape}, expected {(h * k, w * k, 3)}")
    else:
        cv.albedo[...] = background.transpose(2, 0, 1)

    # Painter's order (plus a z-test): body, back hair, neck, ears behind the head, head + decals,
    # ears in front of the head, nose, hair shell, glasses.
    table = _CamTable(cam, model.solids)
    idx = table.index
    solids = model.solids
    head = [i for i, p in enumerate(solids) if p.head]
    nose = [i for i, p in enumerate(solids) if p.label == PART_LABELS["nose"]]
    ears = [i for i, p in enumerate(solids) if p.label == PART_LABELS["ear"]]
    head_depth = float(table.c[head[0], 2])
    one = lambda i: slice(i, i + 1)  # noqa: E731
    for name in ("torso", "hair_back"):
        if name in idx:
            _draw_group(cv, table, one(idx[name]))
    # The neck does not rotate with the head; it writes no depth, so the head (pivoting about its
    # own centre) always passes in front of it instead of intersecting it.
    _draw_group(cv, table, one(idx["neck"]), write_depth=False)
    for i in ears:
        if table.c[i, 2] <= head_depth:
            _draw_group(cv, table, one(i))
    _draw_head(cv, table, slice(head[0], head[-1] + 1))
    _draw_decals(cv, model)
    for i in ears:
        if table.c[i, 2] > head_depth:
            _draw_group(cv, table, one(i))
    if nose:
        _draw_group(cv, table, slice(nose[0], nose[-1] + 1), tau=0.02)
    if "hair" in idx:
        _draw_group(cv, table, one(idx["hair"]))
    if model.glasses is not None:
        _draw_glasses(cv, model)

    planar = cv.shade()
    labels = cv.labels
    if k > 1:
        planar = planar.reshape(3, h, k, w, k).mean(axis=(2, 4), dtype=F32)
        if labels is not None:
            labels = labels[k // 2 :: k, k // 2 :: k]
    img = np.ascontiguousarray(planar.transpose(1, 2, 0))
    landmarks = project(model.landmarks, cam_out).astype(F32)
    visibility = landmark_visibility(model, cam_out)
    if return_labels:
        return img, landmarks, visibility, labels
    return img, landmarks, visibility


def render_face(
    identity: Identity,
    pose: Sequence[float] = (0.0, 0.0, 0.0),
    expression: Expression | Sequence[float] | np.ndarray | None = None,
    size: int | Sequence[int] = (128, 128),
    *,
    lighting: Optional[Sequence[float]] = None,
    translation: Sequence[float] = (0.0, 0.0),
    scale: float = 1.0,
    supersample: int = 1,
    light_frame: str = "camera",
    return_labels: bool = False,
):
    """Render one face.

    Args:
      identity: from :func:`sample_identity`.
      pose: ``(yaw, pitch, roll)`` in degrees (conventions in :mod:`.geometry`).
      expression: an :class:`Expression`, a vector in ``EXPRESSION_FIELDS`` order, or None (neutral).
      size: ``(H, W)`` or an int.
      lighting: ``(azimuth_deg, elevation_deg, ambient)`` overriding the identity's studio light.
      translation: ``(tx, ty[, tz])`` head/body offset in head units (the face is about 2 units tall).
      scale: zoom factor of the camera (1 = default framing).
      supersample: render ``k`` times larger and box-filter down (edges are already anti-aliased).
      light_frame: ``"camera"`` (studio light, default) or ``"head"`` (light rotates with the head;
        used for multi-view captures of one moment).
      return_labels: also return a uint8 part-label map (see ``PART_LABELS``).

    Returns:
      ``image`` float32 (H, W, 3) in [0, 1]; ``landmarks`` float32 (68, 2) pixel (x, y) with pixel
      centres at integer coordinates, iBUG order; ``visibility`` bool (68,) (False where the head
      itself hides the point); and ``labels`` (H, W) uint8 when requested.
    """
    from .geometry import as_expression

    model = build_face_model(identity, as_expression(expression))
    return render_model(
        model, pose, size, lighting=lighting, translation=translation, scale=scale, supersample=supersample,
        light_frame=light_frame, return_labels=return_labels,
    )
