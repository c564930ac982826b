"""The thesis's chapter 1 from scratch in NumPy: layers, activations, losses, optimizers and metrics.

The ``01_*`` notebooks derive each formula and check it against PyTorch; ``tests/test_theory.py`` checks
the same functions on random inputs. Conventions, so that anyone can call them:

- arrays are float64; bad input (shape mismatch, empty array, probabilities outside [0, 1]) raises a
  plain ``ValueError`` that says what was expected;
- losses take ``(prediction, target)`` and return the mean over elements; CCE is the per-sample sum
  −Σ y·log y′ averaged over samples (the last axis holds the classes; a 1-D input is one sample); each loss
  ``L`` has ``L_grad``, the gradient of that mean with respect to the prediction;
- layers follow ``torch.nn.Linear``: ``y = x Wᵀ + b``;
- ``sgd_step(w, grad, lr) -> w``; ``rmsprop_step(w, grad, state, lr, beta, eps) -> (w, state)``, with
  ``state=None`` at the first step, matching ``torch.optim.RMSprop(lr, alpha=beta, eps=eps)``;
- the one-input models (``MODELS``) are fitted on MSE; ``cubic`` is the thesis's b + w·x³, linear in w, b;
- metrics take ``(y_true, y_pred)`` label arrays; ``average="binary"`` scores ``pos_label``,
  ``average="macro"`` is the unweighted mean over classes; 0/0 counts as 0.
"""

import numpy as np

MODELS = ("bias", "weight", "linear", "sigmoid", "cubic")
AVERAGES = ("binary", "macro")


# --- input checks -----------------------------------------------------------------------------------

def _array(x, name):
    """``x`` as a non-empty float64 array, else a ValueError naming ``name``."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"{name} is empty: expected at least one number")
    return a


def _pair(a, b, names=("prediction", "target")):
    """Two non-empty float64 arrays of the same shape."""
    a, b = _array(a, names[0]), _array(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}: "
                         "expected equal shapes")
    return a, b


def _probabilities(a, name):
    """``a`` unchanged if every value lies in [0, 1], else a ValueError."""
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"{name} must hold probabilities in [0, 1]; got values from "
                         f"{np.nanmin(a):g} to {np.nanmax(a):g}")
    return a


def _hyper(value, name, low, high=np.inf, low_open=False):
    """A float hyperparameter within [low, high) (or (low, high) when ``low_open``)."""
    value = float(value)
    if not (low < value if low_open else low <= value) or not value < high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low:g}, {high:g}); got {value:g}")
    return value


# --- layers -----------------------------------------------------------------------------------------

def linear(x, W, b):
    """A linear (fully connected) layer: y = x Wᵀ + b, as ``torch.nn.Linear``."""
    return _array(x, "x") @ _array(W, "W").T + _array(b, "b")


def linear_backward(x, W, grad_y):
    """Gradients of y = x Wᵀ + b: ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_rows g, where g = ∂L/∂y."""
    x, W, g = np.atleast_2d(x), np.asarray(W), np.atleast_2d(grad_y)
    return g @ W, g.T @ x, g.sum(axis=0)


def compose_linear(W1, b1, W2, b2):
    """Two stacked linear layers as one: W2(W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)."""
    W1, W2 = _array(W1, "W1"), _array(W2, "W2")
    return W2 @ W1, W2 @ _array(b1, "b1") + _array(b2, "b2")


def _feature_range(x):
    """Per-feature minimum and range of ``x`` (rows are samples); a constant feature is an error."""
    x = _array(x, "x")
    low, span = x.min(axis=0), np.ptp(x, axis=0)
    if np.any(span == 0):
        raise ValueError("x has a constant feature (max = min): expected at least two distinct values")
    return low, span


def min_max_scaler(x):
    """MinMaxScaler as a feed-forward layer y = w·x + b: w = 1/(max − min), b = −min/(max − min)."""
    low, span = _feature_range(x)
    return 1 / span, -low / span


def standard_scaler(x):
    """StandardScaler as a feed-forward layer y = w·x + b: w = 1/σ, b = −μ/σ (σ with ddof = 0)."""
    x = _array(x, "x")
    std = x.std(axis=0)
    if np.any(std == 0):
        raise ValueError("x has a constant feature (σ = 0): expected at least two distinct values")
    return 1 / std, -x.mean(axis=0) / std


# --- activations ------------------------------------------------------------------------------------

def sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), computed without overflow for large |x|."""
    x = _array(x, "x")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(x):
    """σ′(x) = σ(x)·(1 − σ(x))."""
    s = sigmoid(x)
    return s * (1 - s)


def relu(x):
    """ReLU(x) = max(0, x)."""
    return np.maximum(_array(x, "x"), 0.0)


def relu_grad(x):
    """ReLU′(x) = 1 where x > 0, else 0 (0 at x = 0, as torch takes it)."""
    return (_array(x, "x") > 0).astype(np.float64)


def elu(x, alpha=1.0):
    """ELU(x) = x for x > 0, α(eˣ − 1) otherwise."""
    x = _array(x, "x")
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_grad(x, alpha=1.0):
    """ELU′(x) = 1 for x > 0, α·eˣ otherwise."""
    x = _array(x, "x")
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def tanh(x):
    """tanh(x) = (eˣ − e⁻ˣ) / (eˣ + e⁻ˣ) = 2σ(2x) − 1."""
    return np.tanh(_array(x, "x"))


def tanh_grad(x):
    """tanh′(x) = 1 − tanh²(x)."""
    return 1 - tanh(x) ** 2


def leaky_relu(x, slope=0.01):
    """LeakyReLU(x) = x for x > 0, slope·x otherwise (torch's default slope 0.01)."""
    x = _array(x, "x")
    return np.where(x > 0, x, slope * x)


def leaky_relu_grad(x, slope=0.01):
    """LeakyReLU′(x) = 1 for x > 0, slope otherwise (slope at x = 0, as torch takes it)."""
    return np.where(_array(x, "x") > 0, 1.0, slope)


def softmax(z):
    """softmax(z)_i = e^(z_i) / Σ_j e^(z_j) along the last axis (shifted by max z for stability)."""
    z = _array(z, "z")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_jacobian(z):
    """J = diag(a) − a aᵀ with a = softmax(z): J[i, j] = ∂a_i/∂z_j; one matrix per row of a batch."""
    a = softmax(z)
    return np.eye(a.shape[-1]) * a[..., None] - a[..., :, None] * a[..., None, :]


# --- losses -----------------------------------------------------------------------------------------

def mae(prediction, target):
    """MAE = (1/n) Σ |y′ − y|."""
    p, t = _pair(prediction, target)
    return float(np.mean(np.abs(p - t)))


def mae_grad(prediction, target):
    """∂MAE/∂y′ = sign(y′ − y) / n (0 where y′ = y, as torch takes it)."""
    p, t = _pair(prediction, target)
    return np.sign(p - t) / p.size


def mse(prediction, target):
    """MSE = (1/n) Σ (y′ − y)²."""
    p, t = _pair(prediction, target)
    return float(np.mean((p - t) ** 2))


def mse_grad(prediction, target):
    """∂MSE/∂y′ = 2 (y′ − y) / n."""
    p, t = _pair(prediction, target)
    return 2 * (p - t) / p.size


def _probability_pair(prediction, target):
    """A prediction and a target of equal shape, both probabilities."""
    p, t = _pair(prediction, target)
    return _probabilities(p, "prediction"), _probabilities(t, "target")


def _n_samples(p):
    """Samples in a CCE input: all axes but the last (the classes); a 1-D input is one sample."""
    return p.size // p.shape[-1]


def _xlogy(y, p):
    """y·log p, taking 0·log 0 as 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, y * np.log(p))


def cce(prediction, target):
    """CCE = −(1/N) Σ_samples Σ_classes y·log y′ (y′: predicted probabilities, y: target ones)."""
    p, t = _probability_pair(prediction, target)
    return float(-_xlogy(t, p).sum() / _n_samples(p))


def cce_grad(prediction, target):
    """∂CCE/∂y′ = −y / (N·y′)."""
    p, t = _probability_pair(prediction, target)
    with np.errstate(divide="ignore"):
        return np.where(t == 0, 0.0, -t / (_n_samples(p) * p))


def bce(prediction, target):
    """BCE = −(1/n) Σ [y·log y′ + (1 − y)·log(1 − y′)]."""
    p, t = _probability_pair(prediction, target)
    return float(-np.mean(_xlogy(t, p) + _xlogy(1 - t, 1 - p)))


def bce_grad(prediction, target):
    """∂BCE/∂y′ = (y′ − y) / (n·y′·(1 − y′)); 0 where y′ = y, even at 0 or 1, as torch takes it."""
    p, t = _probability_pair(prediction, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p == t, 0.0, (p - t) / (p.size * p * (1 - p)))


# --- backpropagation: Linear → ReLU → Linear --------------------------------------------------------

def mlp_forward(x, W1, b1, W2, b2):
    """Forward pass h = x W1ᵀ + b1, a = ReLU(h), y′ = a W2ᵀ + b2; returns y′ and what backward needs."""
    h = linear(x, W1, b1)
    a = relu(h)
    return linear(a, W2, b2), {"x": np.atleast_2d(x), "h": h, "a": a, "W1": W1, "W2": W2}


def mlp_backward(cache, grad_y):
    """Backward pass by the chain rule, from g = ∂L/∂y′ back to every parameter and the input."""
    grad_a, grad_W2, grad_b2 = linear_backward(cache["a"], cache["W2"], grad_y)
    grad_h = grad_a * relu_grad(cache["h"])
    grad_x, grad_W1, grad_b1 = linear_backward(cache["x"], cache["W1"], grad_h)
    return {"x": grad_x, "W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}


# --- optimizers -------------------------------------------------------------------------------------

def sgd_step(w, grad, lr):
    """One step of gradient descent: w ← w − η·∂L/∂w."""
    w, g = _pair(w, grad, ("w", "grad"))
    return w - _hyper(lr, "lr", 0, low_open=True) * g


def rmsprop_step(w, grad, state=None, lr=0.01, beta=0.99, eps=1e-8):
    """One RMSprop step: v ← β·v + (1 − β)·g², w ← w − η·g / (√v + ε); returns (w, v).

    ``state`` is v from the previous step (``None`` at the first: v starts at 0). Each parameter keeps its
    own v (v_dw for w, v_db for b). ε is added outside the square root, as in
    ``torch.optim.RMSprop(params, lr=lr, alpha=beta, eps=eps)``, which these steps equal.
    """
    w, g = _pair(w, grad, ("w", "grad"))
    v = np.zeros_like(w) if state is None else _pair(state, w, ("state", "w"))[0]
    beta = _hyper(beta, "beta", 0, 1)
    v = beta * v + (1 - beta) * g ** 2
    return w - _hyper(lr, "lr", 0, low_open=True) * g / (np.sqrt(v) + _hyper(eps, "eps", 0)), v


def descend(grad_fn, w0, steps, lr, method="sgd", beta=0.9, eps=1e-8):
    """The path (steps + 1 points) of ``method`` (``sgd`` or ``rmsprop``) from ``w0``; ``grad_fn(w)`` is ∇L."""
    if method not in ("sgd", "rmsprop"):
        raise ValueError(f"method must be 'sgd' or 'rmsprop'; got {method!r}")
    path, state = [_array(w0, "w0")], None
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            g = grad_fn(path[-1])
            if method == "sgd":
                path.append(sgd_step(path[-1], g, lr))
            else:
                w, state = rmsprop_step(path[-1], g, state, lr, beta, eps)
                path.append(w)
    return np.array(path)


def ravine(w, scales=(1.0, 25.0)):
    """A long narrow valley f(w) = ½ Σ sᵢ wᵢ², steep where s is large; returns (f, ∇f = s·w)."""
    w, s = _array(w, "w"), np.asarray(scales, dtype=np.float64)
    return 0.5 * np.sum(s * w ** 2, axis=-1), s * w


# --- one-input models fitted by gradient descent on MSE ----------------------------------------------

def _check_model(model):
    """``model`` if it is one of MODELS, else a ValueError listing them."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    return model


_PREDICT = {
    "bias": lambda x, w, b: b + 0 * x,
    "weight": lambda x, w, b: w * x,
    "linear": lambda x, w, b: w * x + b,
    "sigmoid": lambda x, w, b: sigmoid(w * x + b),
    "cubic": lambda x, w, b: b + w * x ** 3,
}

_PARTIALS = {
    "bias": lambda x, w, b: (0 * x, 1 + 0 * x),
    "weight": lambda x, w, b: (x, 0 * x),
    "linear": lambda x, w, b: (x, 1 + 0 * x),
    "sigmoid": lambda x, w, b: (sigmoid_grad(w * x + b) * x, sigmoid_grad(w * x + b)),
    "cubic": lambda x, w, b: (x ** 3, 1 + 0 * x),
}

# Models whose prediction is linear in (w, b): y′ = w·φ(x) + b·c, so their MSE is a convex quadratic.
LINEAR_IN_PARAMETERS = ("bias", "weight", "linear", "cubic")


def model_predict(model, x, w, b):
    """y′ of a one-input model: bias b, weight w·x, linear w·x + b, sigmoid σ(w·x + b), cubic b + w·x³.

    The cubic model is the thesis's "b + W·x³ without an activation function": linear in w and b, with x³
    in place of x (so ∂y′/∂x = 3·w·x²).
    """
    return _PREDICT[_check_model(model)](_array(x, "x"), float(w), float(b))


def model_partials(model, x, w, b):
    """(∂y′/∂w, ∂y′/∂b) of ``model_predict`` at every x: sigmoid σ′(z)·(x, 1), z = w·x + b; cubic (x³, 1)."""
    return _PARTIALS[_check_model(model)](_array(x, "x"), float(w), float(b))


def model_grads(model, x, y, w, b):
    """(∂MSE/∂w, ∂MSE/∂b) = (1/n) Σ 2(y′ − y)·(∂y′/∂w, ∂y′/∂b), by the chain rule."""
    g = mse_grad(model_predict(model, x, w, b), y)
    dw, db = model_partials(model, x, w, b)
    return float(np.sum(g * dw)), float(np.sum(g * db))


def fit_sgd(model, x, y, w=0.0, b=0.0, lr=0.1, steps=100):
    """Full-batch gradient descent on the MSE of ``model``: final w, b, the path and the loss per step."""
    params = np.array([w, b], dtype=np.float64)
    path, losses = [params], [mse(model_predict(model, x, *params), y)]
    for _ in range(int(steps)):
        params = sgd_step(params, model_grads(model, x, y, *params), lr)
        path.append(params)
        losses.append(mse(model_predict(model, x, *params), y))
    return {"w": float(params[0]), "b": float(params[1]), "path": np.array(path), "loss": np.array(losses)}


def loss_surface(model, x, y, ws, bs):
    """MSE of ``model`` on a grid: L[i, j] is the loss at w = ws[j], b = bs[i]."""
    return np.array([[mse(model_predict(model, x, w, b), y) for w in ws] for b in bs])


def loss_hessian(model, x, y, w, b, h=1e-5):
    """The 2×2 Hessian of the MSE of ``model`` in (w, b), by central differences of ``model_grads``."""
    point = np.array([w, b], dtype=np.float64)
    return np.array([(np.array(model_grads(model, x, y, *(point + d)))
                      - np.array(model_grads(model, x, y, *(point - d)))) / (2 * h)
                     for d in np.eye(2) * h])


def least_squares(model, x, y):
    """The exact minimum (w, b) of the MSE of a model linear in its parameters (``LINEAR_IN_PARAMETERS``).

    The normal equations of y′ = w·φ(x) + b·c, solved by ``np.linalg.lstsq``; the parameter a model lacks
    (b of ``weight``, w of ``bias``) is 0.
    """
    if _check_model(model) not in LINEAR_IN_PARAMETERS:
        raise ValueError(f"least_squares needs a model linear in w and b ({', '.join(LINEAR_IN_PARAMETERS)}); "
                         f"got {model!r}: fit it with fit_sgd")
    x, y = _pair(x, y, ("x", "y"))
    features = np.column_stack(model_partials(model, x, 0.0, 0.0))
    used = np.any(features != 0, axis=0)
    solution = np.zeros(2)
    solution[used] = np.linalg.lstsq(features[:, used], y, rcond=None)[0]
    return float(solution[0]), float(solution[1])


# --- mini-batch training (the hyperparameters' playground) ------------------------------------------

def train_linear_regression(x, y, lr, batch_size, epochs, seed=0, validation=None):
    """Mini-batch SGD on y′ = x·w + b with MSE, from w = 0, b = 0.

    ``x`` holds one row per sample (a 1-D ``x`` is one feature); ``y`` one target per row. Each epoch visits
    the rows in a fresh order drawn from ``seed``, in batches of ``batch_size`` rows (the last one smaller
    when ``batch_size`` does not divide the rows), as ``torch.utils.data.DataLoader`` does. Returns
    ``{"w", "b", "loss", "val_loss"}``: the final parameters and the full-data MSE after each epoch on
    (x, y) and on ``validation`` = (x_val, y_val) if given (else an empty array). A learning rate too large
    gives losses that grow to inf or nan instead of an error, so that the divergence can be plotted.
    """
    x, y = _regression_data(x, y, ("x", "y"))
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    sets = [(x, y)]
    if validation is not None:
        sets.append(_regression_data(*validation, ("x_val", "y_val")))
        if sets[1][0].shape[1] != x.shape[1]:
            raise ValueError(f"x_val has {sets[1][0].shape[1]} features but x has {x.shape[1]}: "
                             "expected the same features")
    rng, params, losses = np.random.default_rng(seed), np.zeros(x.shape[1] + 1), []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(epochs)):
            perm = rng.permutation(len(y))
            for rows in np.split(perm, np.arange(int(batch_size), len(y), int(batch_size))):
                params = sgd_step(params, _regression_grad(x[rows], y[rows], params), lr)
            losses.append([_regression_loss(*data, params) for data in sets])
    losses = np.array(losses).reshape(int(epochs), len(sets))
    return {"w": params[:-1], "b": float(params[-1]), "loss": losses[:, 0], "val_loss": losses[:, 1:].ravel()}


def _regression_data(x, y, names):
    """Samples as rows of a 2-D x (a 1-D x is one feature) and one target per row of a 1-D y."""
    x, y = _array(x, names[0]), _array(y, names[1])
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{names[0]} has shape {x.shape} and {names[1]} has shape {y.shape}: expected "
                         f"{names[0]} as (samples, features) or (samples,) and one {names[1]} per sample")
    return x, y


def _regression_predict(x, params):
    """y′ = x·w + b as one-output ``linear`` layer, params = (w, b); shape (samples, 1)."""
    return linear(x, params[None, :-1], params[-1:])


def _regression_loss(x, y, params):
    """MSE of y′ = x·w + b."""
    return mse(_regression_predict(x, params)[:, 0], y)


def _regression_grad(x, y, params):
    """∂MSE/∂(w, b) of y′ = x·w + b on one batch, by ``mse_grad`` and ``linear_backward``."""
    grad_y = mse_grad(_regression_predict(x, params), y[:, None])
    _, grad_w, grad_b = linear_backward(x, params[None, :-1], grad_y)
    return np.append(grad_w[0], grad_b)


# --- classification metrics -------------------------------------------------------------------------

def _labels(y_true, y_pred):
    """Two equal-length, non-empty 1-D label arrays."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of equal length; "
                         f"got shapes {t.shape} and {p.shape}")
    return t, p


def confusion_matrix(y_true, y_pred, labels=None):
    """C[i, j] = how many samples of class labels[i] were predicted as labels[j] (default: sorted classes)."""
    t, p = _labels(y_true, y_pred)
    labels = np.union1d(t, p) if labels is None else np.asarray(labels)
    if not np.all(np.isin(t, labels) & np.isin(p, labels)):
        raise ValueError(f"labels {labels.tolist()} miss classes that occur in y_true or y_pred")
    index = {label: i for i, label in enumerate(labels.tolist())}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[v] for v in t.tolist()], [index[v] for v in p.tolist()]), 1)
    return matrix


def binary_confusion_matrix(y_true, y_pred, pos_label=1):
    """The thesis's layout: truth in rows, guess in columns, the positive class first: [[TP, FN], [FP, TN]].

    (``confusion_matrix`` sorts the classes, as scikit-learn does, which gives [[TN, FP], [FN, TP]] for 0/1.)
    """
    t, p = _labels(y_true, y_pred)
    others = [c for c in np.union1d(t, p).tolist() if c != pos_label]
    if len(others) > 1:
        raise ValueError(f"binary_confusion_matrix needs two classes including pos_label={pos_label!r}; got "
                         f"classes {np.union1d(t, p).tolist()}: use confusion_matrix for several classes")
    negative = others[0] if others else (0 if pos_label != 0 else 1)
    return confusion_matrix(t, p, labels=[pos_label, negative])


def accuracy(y_true, y_pred):
    """Accuracy = correct / all = (TP + TN) / (TP + TN + FP + FN)."""
    t, p = _labels(y_true, y_pred)
    return float(np.mean(t == p))


def _ratio(numerator, denominator):
    """numerator / denominator, with 0/0 taken as 0."""
    return float(numerator / denominator) if denominator else 0.0


def _precision(t, p, label):
    """TP / (TP + FP) for one class."""
    return _ratio(np.sum((p == label) & (t == label)), np.sum(p == label))


def _recall(t, p, label):
    """TP / (TP + FN) for one class."""
    return _ratio(np.sum((p == label) & (t == label)), np.sum(t == label))


def _f1(t, p, label):
    """2·P·R / (P + R) for one class."""
    prec, rec = _precision(t, p, label), _recall(t, p, label)
    return _ratio(2 * prec * rec, prec + rec)


def _score(per_class, y_true, y_pred, average, pos_label):
    """``per_class`` for ``pos_label`` (binary) or its mean over all classes (macro)."""
    t, p = _labels(y_true, y_pred)
    classes = np.union1d(t, p)
    if average == "macro":
        return float(np.mean([per_class(t, p, c) for c in classes]))
    if average != "binary":
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}; got {average!r}")
    if len(classes) > 2 or (len(classes) == 2 and pos_label not in classes):
        raise ValueError(f"average='binary' needs two classes including pos_label={pos_label!r}; got "
                         f"classes {classes.tolist()}: use average='macro' for several classes")
    return per_class(t, p, pos_label)


def precision(y_true, y_pred, average="binary", pos_label=1):
    """Precision = TP / (TP + FP): of the samples predicted positive, the share that is."""
    return _score(_precision, y_true, y_pred, average, pos_label)


def recall(y_true, y_pred, average="binary", pos_label=1):
    """Recall = TP / (TP + FN): of the positive samples, the share found."""
    return _score(_recall, y_true, y_pred, average, pos_label)


def f1(y_true, y_pred, average="binary", pos_label=1):
    """F1 = 2·P·R / (P + R), the harmonic mean of precision and recall (macro: mean of per-class F1)."""
    return _score(_f1, y_true, y_pred, average, pos_label)
