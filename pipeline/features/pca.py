"""Principal component analysis with NumPy, as in the course notes.

The notes' recipe: centre `X` on the training mean, `cov = Xc^T Xc / N`,
`U, S, V = svd(cov)`, project on the first `k` columns of `U`. That exact path
is used for narrow data (at most `WIDE_FEATURES` columns). Wider data (CIFAR's
3,072 pixels) uses `sklearn.utils.extmath.randomized_svd` on the centred
matrix, seeded, with `S = s**2 / N`.

PCA only centres: it does not standardize the columns (as the notes and
`sklearn.decomposition.PCA`); standardize first when columns have unrelated
scales. Component signs are fixed like scikit-learn's `svd_flip` (largest
absolute loading positive), so results are stable across runs. Whitening
divides each projected column by `sqrt(S_k)`, giving unit variance on the
training rows (population variance, `ddof=0`).
"""

from __future__ import annotations

import io

import numpy as np

WIDE_FEATURES = 1000
_FIRST_RANDOMIZED = 64


def _flip_signs(components: np.ndarray) -> np.ndarray:
    """Make the largest absolute loading of every component (row) positive."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def _n_for_fraction(ratio: np.ndarray, fraction: float) -> int | None:
    """Smallest `k` whose cumulative explained-variance ratio reaches `fraction` (as scikit-learn)."""
    cum = np.cumsum(ratio)
    if cum.size == 0 or cum[-1] < fraction:
        return None
    return min(int(np.searchsorted(cum, fraction, side="right")) + 1, cum.size)


class PCA:
    """Centred PCA with an integer or variance-fraction number of components.

    Args:
        `n_components`: int >= 1, or a float in (0, 1): keep the fewest
            components whose explained variance reaches that fraction.
        `whiten`: divide the projections by the square root of their variance.
        `seed`: random state of the randomized SVD (wide data only).

    Raises:
        ValueError / TypeError: for an invalid `n_components`.
    """

    name = "pca"

    def __init__(self, n_components: float, whiten: bool = False, seed: int = 42):
        _check_n_components(n_components)
        self.n_components = n_components
        self.whiten = bool(whiten)
        self.seed = int(seed)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.explained_variance: np.ndarray | None = None
        self.explained_variance_ratio: np.ndarray | None = None
        self.method: str | None = None

    @property
    def k(self) -> int:
        """Number of components kept after fitting."""
        return int(self.components.shape[0])

    def fit(self, X: np.ndarray) -> PCA:
        """Fit the mean and the principal axes on training rows.

        Args:
            `X`: 2-D training features (n_samples, n_features).

        Returns:
            `self`, with `mean`, `components` (k, n_features),
            `explained_variance` / `explained_variance_ratio` of every computed
            component (the curve data) and `method` (`exact` or `randomized`).

        Raises:
            ValueError: when more components are asked for than the data has
                (features or samples), or `X` has fewer than 2 rows.
        """
        X = np.asarray(X)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 training rows, got {n}")
        if isinstance(self.n_components, int) and self.n_components > min(n, d):
            raise ValueError(
                f"n_components={self.n_components} exceeds what the data allows: "
                f"{d} features and {n} training rows (at most {min(n, d)})"
            )
        self.mean = X.mean(axis=0, dtype=np.float64)
        Xc = X - self.mean.astype(X.dtype)
        if d <= WIDE_FEATURES:
            self._fit_exact(Xc)
        else:
            self._fit_randomized(Xc)
        return self

    def _keep(self, ratio: np.ndarray) -> int | None:
        """Number of components to keep given the ratios computed so far."""
        if isinstance(self.n_components, int):
            return self.n_components if self.n_components <= len(ratio) else None
        return _n_for_fraction(ratio, self.n_components)

    def _set(self, axes: np.ndarray, variance: np.ndarray, total: float, method: str) -> None:
        """Store the first `k` axes (rows) and the variance curve."""
        ratio = variance / total if total > 0 else np.zeros_like(variance)
        k = self._keep(ratio) or len(ratio)  # an unreachable fraction (rounding) keeps all computed
        self.components = _flip_signs(axes[:k]).astype(np.float64)
        self.explained_variance = variance
        self.explained_variance_ratio = ratio
        self.method = method

    def _fit_exact(self, Xc: np.ndarray) -> None:
        """The notes' path: SVD of the covariance matrix."""
        X64 = Xc.astype(np.float64, copy=False)
        cov = X64.T @ X64 / len(X64)
        U, S, _ = np.linalg.svd(cov)
        self._set(U.T, S, float(np.trace(cov)), "exact")

    def _fit_randomized(self, Xc: np.ndarray) -> None:
        """Randomized SVD of the centred data, doubling `k` until a variance fraction is reached."""
        from sklearn.utils.extmath import randomized_svd  # noqa: PLC0415 - only for wide data

        n, d = Xc.shape
        total = float(np.einsum("ij,ij->", Xc, Xc, dtype=np.float64) / n)
        limit = min(n, d)
        k = self.n_components if isinstance(self.n_components, int) else min(_FIRST_RANDOMIZED, limit)
        while True:
            _, s, Vt = randomized_svd(Xc, k, random_state=self.seed)
            variance = s.astype(np.float64) ** 2 / n
            if self._keep(variance / total) is not None or k >= limit:
                break
            k = min(2 * k, limit)
        self._set(Vt, variance, total, "randomized")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project rows on the kept components (whitened if asked) as float32."""
        Z = (np.asarray(X, dtype=np.float64) - self.mean) @ self.components.T
        if self.whiten:
            var = self.explained_variance[: self.k]
            Z /= np.sqrt(np.maximum(var, 1e-12 * max(float(var.max()), 1e-300)))
        return Z.astype(np.float32)

    def params(self) -> dict:
        """Return the JSON parameters of this step."""
        return {
            "n_components": self.n_components,
            "whiten": self.whiten,
            "seed": self.seed,
            "method": self.method,
            "k": self.k if self.components is not None else None,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the fitted state as named arrays."""
        return {
            "mean": self.mean,
            "components": self.components,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict) -> PCA:
        """Rebuild a fitted PCA from `to_arrays` output and `params()`."""
        obj = cls(params["n_components"], params["whiten"], params["seed"])
        obj.method = params["method"]
        for key in ("mean", "components", "explained_variance", "explained_variance_ratio"):
            setattr(obj, key, arrays[key])
        return obj

    def curve(self) -> dict:
        """Return the explained-variance curve (per component and cumulative) and the kept `k`."""
        ratio = self.explained_variance_ratio
        return {
            "explained_variance_ratio": [float(v) for v in ratio],
            "cumulative": [float(v) for v in np.cumsum(ratio)],
            "k": self.k,
            "method": self.method,
            "n_components": self.n_components,
        }


def _check_n_components(n_components) -> None:
    """Raise unless `n_components` is an int >= 1 or a float in (0, 1)."""
    if isinstance(n_components, bool) or not isinstance(n_components, (int, float)):
        raise TypeError(f"n_components must be an int >= 1 or a float in (0, 1), got {n_components!r}")
    if isinstance(n_components, int) and n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if isinstance(n_components, float) and not 0.0 < n_components < 1.0:
        raise ValueError(f"a float n_components is a variance fraction in (0, 1), got {n_components}")


def plot_png(curve: dict) -> bytes:
    """Render the cumulative explained-variance curve as PNG bytes (matplotlib Agg, no timestamps).

    Args:
        `curve`: output of `PCA.curve()`.

    Returns:
        The PNG file content; the same curve always gives the same bytes.
    """
    import matplotlib  # noqa: PLC0415 - plotting is optional and slow to import

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415

    cum = curve["cumulative"]
    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(cum) + 1), cum, lw=1.5)
    ax.axvline(curve["k"], color="tab:red", ls="--", lw=1, label=f"k = {curve['k']}")
    ax.set_xlabel("components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
