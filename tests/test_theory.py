"""thesislib.theory against PyTorch (float64, seeded random inputs) and against the thesis's examples."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from thesislib import theory

SEEDS = range(5)
TOL = 1e-10  # float64 agreement with torch; the issue asks for 1e-6


def rng_for(seed):
    return np.random.default_rng(1000 + seed)


def tensor(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def autograd(fn, *arrays):
    """Value and gradient (with respect to every input; 0 for an unused one) of a torch function's sum."""
    inputs = [tensor(a, grad=True) for a in arrays]
    out = fn(*inputs)
    out.sum().backward()
    return out.detach().numpy(), [np.zeros(t.shape) if t.grad is None else t.grad.numpy() for t in inputs]


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def probabilities(rng, shape):
    return rng.uniform(0.02, 0.98, size=shape)


# --- activations ------------------------------------------------------------------------------------

ACTIVATIONS = [
    (theory.sigmoid, theory.sigmoid_grad, torch.sigmoid),
    (theory.relu, theory.relu_grad, torch.relu),
    (theory.tanh, theory.tanh_grad, torch.tanh),
    (theory.leaky_relu, theory.leaky_relu_grad, F.leaky_relu),
    (lambda x: theory.leaky_relu(x, 0.2), lambda x: theory.leaky_relu_grad(x, 0.2),
     lambda x: F.leaky_relu(x, 0.2)),
    (theory.elu, theory.elu_grad, F.elu),
    (lambda x: theory.elu(x, alpha=0.3), lambda x: theory.elu_grad(x, alpha=0.3),
     lambda x: F.elu(x, alpha=0.3)),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ours, our_grad, torch_fn", ACTIVATIONS)
def test_activation_and_its_derivative_equal_torch_autograd(seed, ours, our_grad, torch_fn):
    x = rng_for(seed).normal(scale=4, size=(7, 5))
    value, (grad,) = autograd(torch_fn, x)
    close(ours(x), value)
    close(our_grad(x), grad)


def test_sigmoid_of_the_thesis_example():
    values = theory.sigmoid([35.4, 10.1, -4.2, 0])
    np.testing.assert_allclose(values, [1.0, 0.9999589, 0.0147740, 0.5], atol=1e-7)


def test_thesis_first_sigmoid_value_is_sigmoid_of_31_4_not_35_4():
    assert f"{theory.sigmoid(31.4)[()]:.15f}" == "0.999999999999977"
    assert f"{theory.sigmoid(35.4)[()]:.15f}" == "1.000000000000000"


def test_sigmoid_does_not_overflow_far_from_zero():
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_array_equal(theory.sigmoid([-1000.0, 1000.0]), [0.0, 1.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_equals_torch_softmax_on_a_batch(seed):
    z = rng_for(seed).normal(scale=3, size=(4, 6))
    close(theory.softmax(z), torch.softmax(tensor(z), dim=-1).numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_jacobian_is_diag_a_minus_a_at_and_equals_torch(seed):
    z = rng_for(seed).normal(scale=2, size=5)
    jac = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, dim=-1), tensor(z)).numpy()
    a = theory.softmax(z)
    close(theory.softmax_jacobian(z), jac)
    close(theory.softmax_jacobian(z), np.diag(a) - np.outer(a, a))


def test_softmax_jacobian_of_a_batch_holds_one_matrix_per_row():
    z = rng_for(0).normal(size=(3, 4))
    batch = theory.softmax_jacobian(z)
    assert batch.shape == (3, 4, 4)
    close(batch[2], theory.softmax_jacobian(z[2]))


# --- losses -----------------------------------------------------------------------------------------

LOSSES = [
    (theory.mae, theory.mae_grad, F.l1_loss),
    (theory.mse, theory.mse_grad, F.mse_loss),
    (theory.bce, theory.bce_grad, F.binary_cross_entropy),
    (theory.cce, theory.cce_grad, lambda p, y: -(y * torch.log(p)).sum(dim=-1).mean()),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("loss, loss_grad, torch_loss", LOSSES, ids=["mae", "mse", "bce", "cce"])
def test_loss_and_its_gradient_equal_torch(seed, loss, loss_grad, torch_loss):
    rng = rng_for(seed)
    prediction, target = probabilities(rng, (6, 4)), probabilities(rng, (6, 4))
    value, (grad, _) = autograd(torch_loss, prediction, target)
    close(loss(prediction, target), value)
    close(loss_grad(prediction, target), grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_cce_of_softmax_equals_torch_cross_entropy_on_logits(seed):
    rng = rng_for(seed)
    logits = rng.normal(size=(8, 5))
    labels = rng.integers(0, 5, size=8)
    one_hot = np.eye(5)[labels]
    expected = F.cross_entropy(tensor(logits), torch.tensor(labels)).item()
    close(theory.cce(theory.softmax(logits), one_hot), expected)


def test_cce_takes_a_1d_input_as_one_sample():
    p, y = np.array([0.7, 0.2, 0.1]), np.array([1.0, 0.0, 0.0])
    close(theory.cce(p, y), -np.log(0.7))
    close(theory.cce(p, y), theory.cce(p[None], y[None]))


def test_bce_counts_zero_times_log_zero_as_zero():
    assert theory.bce([0.0, 1.0], [0.0, 1.0]) == 0.0


def test_bce_gradient_where_prediction_equals_a_target_of_0_or_1_is_0_as_in_torch():
    prediction, target = [0.0, 1.0, 0.3], [0.0, 1.0, 0.0]
    _, (grad, _) = autograd(F.binary_cross_entropy, prediction, target)
    np.testing.assert_array_equal(theory.bce_grad(prediction, target)[:2], [0.0, 0.0])
    close(theory.bce_grad(prediction, target), grad)


# --- backpropagation --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_linear_relu_linear_backward_by_hand_equals_autograd(seed):
    rng = rng_for(seed)
    x, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    params = [rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)), rng.normal(size=2)]

    def torch_loss(x, W1, b1, W2, b2):
        return F.mse_loss(torch.relu(x @ W1.T + b1) @ W2.T + b2, tensor(target))

    value, grads = autograd(torch_loss, x, *params)
    prediction, cache = theory.mlp_forward(x, *params)
    ours = theory.mlp_backward(cache, theory.mse_grad(prediction, target))
    close(theory.mse(prediction, target), value)
    for name, grad in zip(["x", "W1", "b1", "W2", "b2"], grads):
        close(ours[name], grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_layer_equals_torch_nn_linear(seed):
    rng = rng_for(seed)
    x, W, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    close(theory.linear(x, W, b), F.linear(tensor(x), tensor(W), tensor(b)).numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_two_stacked_linear_layers_equal_one(seed):
    rng = rng_for(seed)
    x = rng.normal(size=(6, 3))
    W1, b1, W2, b2 = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)), rng.normal(size=2)
    W, b = theory.compose_linear(W1, b1, W2, b2)
    close(theory.linear(x, W, b), theory.linear(theory.linear(x, W1, b1), W2, b2))


# --- the one-input models ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("model", theory.MODELS)
def test_model_gradients_equal_torch_autograd(seed, model):
    rng = rng_for(seed)
    x, y = rng.normal(size=9), rng.normal(size=9)
    w, b = rng.normal(size=2)
    torch_predict = {"bias": lambda x, w, b: b + 0 * x, "weight": lambda x, w, b: w * x,
                     "linear": lambda x, w, b: w * x + b, "sigmoid": lambda x, w, b: torch.sigmoid(w * x + b),
                     "cubic": lambda x, w, b: b + w * x ** 3}[model]
    torch_loss = lambda x, w, b: F.mse_loss(torch_predict(x, w, b), tensor(y))  # noqa: E731
    value, (_, grad_w, grad_b) = autograd(torch_loss, x, w, b)
    close(theory.mse(theory.model_predict(model, x, w, b), y), value)
    close(theory.model_grads(model, x, y, w, b), [grad_w, grad_b])


@pytest.mark.parametrize("seed", SEEDS)
def test_cubic_model_is_b_plus_w_x_cubed_and_its_gradients_equal_autograd_to_1e_6(seed):
    rng = rng_for(seed)
    x, y = rng.uniform(-2, 2, size=15), rng.normal(size=15)
    w, b = rng.normal(size=2)
    np.testing.assert_allclose(theory.model_predict("cubic", x, w, b), b + w * x ** 3, rtol=0, atol=1e-12)
    value, (grad_x, grad_w, grad_b) = autograd(lambda x, w, b: b + w * x ** 3, x, w, b)
    np.testing.assert_allclose(theory.model_partials("cubic", x, w, b), [x ** 3, np.ones(15)], atol=1e-12)
    np.testing.assert_allclose(grad_x, 3 * w * x ** 2, rtol=0, atol=1e-6)   # the thesis's ∂ŷ/∂x = 3·W·x²
    _, (_, loss_w, loss_b) = autograd(lambda x, w, b: F.mse_loss(b + w * x ** 3, tensor(y)), x, w, b)
    np.testing.assert_allclose(theory.model_grads("cubic", x, y, w, b), [loss_w, loss_b], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_cubic_loss_surface_is_convex_with_the_same_hessian_everywhere(seed):
    rng = rng_for(seed)
    x, y = rng.uniform(-1, 1, size=30), rng.normal(size=30)
    expected = 2 * np.array([[np.mean(x ** 6), np.mean(x ** 3)], [np.mean(x ** 3), 1.0]])
    for w, b in rng.normal(scale=3, size=(4, 2)):
        hessian = theory.loss_hessian("cubic", x, y, w, b)
        np.testing.assert_allclose(hessian, expected, rtol=0, atol=1e-6)
        assert np.all(np.linalg.eigvalsh(hessian) > 0)


@pytest.mark.parametrize("model", theory.LINEAR_IN_PARAMETERS)
def test_least_squares_is_where_gradient_descent_ends_for_models_linear_in_w_and_b(model):
    rng = rng_for(0)
    x = rng.uniform(-1, 1, size=25)
    y = 0.7 * x ** 3 + 0.4 * x - 0.2 + rng.normal(scale=0.1, size=25)
    w, b = theory.least_squares(model, x, y)
    fit = theory.fit_sgd(model, x, y, lr=0.4, steps=20000)
    assert (fit["w"], fit["b"]) == pytest.approx((w, b), abs=1e-8)
    np.testing.assert_allclose(theory.model_grads(model, x, y, w, b), [0, 0], atol=1e-12)


def test_least_squares_refuses_the_sigmoid_model():
    with pytest.raises(ValueError, match="fit it with fit_sgd"):
        theory.least_squares("sigmoid", [0.0, 1.0], [0.0, 1.0])


@pytest.mark.parametrize("data, mean", [([1, 1, 2, 2, 3, 3], 2.0), ([2, 2, 3, 3, 4, 4], 3.0)])
def test_bias_only_layer_trained_with_mse_converges_to_the_mean(data, mean):
    fit = theory.fit_sgd("bias", np.zeros(6), data, lr=0.1, steps=200)
    assert fit["b"] == pytest.approx(mean, abs=1e-6)


@pytest.mark.parametrize("sign", [1, -1])
def test_weight_only_layer_learns_the_sign_of_the_correlation(sign):
    rng = rng_for(0)
    x = rng.normal(size=50)
    y = sign * 0.8 * x + rng.normal(scale=0.3, size=50)
    assert np.sign(theory.fit_sgd("weight", x, y, lr=0.1, steps=100)["w"]) == sign


def test_linear_model_fit_recovers_the_line_and_loss_surface_has_its_minimum_there():
    x = np.linspace(-1, 1, 21)
    fit = theory.fit_sgd("linear", x, 2 * x - 1, lr=0.5, steps=300)
    assert (fit["w"], fit["b"]) == pytest.approx((2, -1), abs=1e-6)
    assert fit["loss"][-1] < 1e-12
    ws, bs = np.linspace(0, 4, 41), np.linspace(-3, 1, 41)
    surface = theory.loss_surface("linear", x, 2 * x - 1, ws, bs)
    i, j = np.unravel_index(surface.argmin(), surface.shape)
    assert (ws[j], bs[i]) == pytest.approx((2, -1))


# --- scalers as a feed-forward layer ----------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_min_max_scaler_weights_map_each_feature_to_zero_one(seed):
    x = rng_for(seed).normal(loc=5, scale=3, size=(20, 3))
    w, b = theory.min_max_scaler(x)
    close(w * x + b, (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0)))
    close(theory.linear(x, np.diag(w), b), w * x + b)


@pytest.mark.parametrize("seed", SEEDS)
def test_standard_scaler_weights_give_zero_mean_and_unit_std(seed):
    x = rng_for(seed).normal(loc=5, scale=3, size=(20, 3))
    w, b = theory.standard_scaler(x)
    close((w * x + b).mean(axis=0), 0)
    close((w * x + b).std(axis=0), 1)


# --- optimizers -------------------------------------------------------------------------------------

def torch_steps(optimizer_cls, w0, grads, **settings):
    """The parameter after each step of a torch optimizer fed the given gradients."""
    w = tensor(w0, grad=True)
    optimizer = optimizer_cls([w], **settings)
    path = []
    for g in grads:
        w.grad = tensor(g)
        optimizer.step()
        path.append(w.detach().numpy().copy())
    return path


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_steps_equal_torch_optim_sgd(seed):
    rng = rng_for(seed)
    w, grads = rng.normal(size=4), rng.normal(size=(10, 4))
    expected = torch_steps(torch.optim.SGD, w, grads, lr=0.05)
    for g, want in zip(grads, expected):
        w = theory.sgd_step(w, g, 0.05)
        close(w, want)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lr, beta, eps", [(0.01, 0.99, 1e-8), (0.1, 0.9, 1e-3)])
def test_rmsprop_steps_equal_torch_optim_rmsprop_step_for_step(seed, lr, beta, eps):
    rng = rng_for(seed)
    w, grads = rng.normal(size=(2, 3)), rng.normal(scale=2, size=(20, 2, 3))
    expected = torch_steps(torch.optim.RMSprop, w, grads, lr=lr, alpha=beta, eps=eps)
    state = None
    for g, want in zip(grads, expected):
        w, state = theory.rmsprop_step(w, g, state, lr=lr, beta=beta, eps=eps)
        close(w, want)


def test_rmsprop_converges_where_sgd_diverges_on_the_ravine():
    grad = lambda w: theory.ravine(w)[1]  # noqa: E731
    sgd = theory.descend(grad, [2.0, 1.0], 100, lr=0.085)
    rms = theory.descend(grad, [2.0, 1.0], 300, lr=0.02, method="rmsprop")
    assert abs(sgd[-1, 1]) > 1e3
    assert np.abs(rms[-1]).max() < 0.05


# --- hyperparameters --------------------------------------------------------------------------------

def test_mini_batch_regression_converges_with_a_good_rate_and_diverges_with_a_large_one():
    rng = rng_for(0)
    x = rng.normal(size=(64, 2))
    y = x @ [1.5, -2.0] + 0.5 + rng.normal(scale=0.1, size=64)
    good = theory.train_linear_regression(x, y, lr=0.05, batch_size=8, epochs=20, validation=(x, y))
    bad = theory.train_linear_regression(x, y, lr=3.0, batch_size=64, epochs=20)
    assert good["loss"][-1] < 0.02 < good["loss"][0]
    assert (good["w"], good["b"]) == (pytest.approx([1.5, -2.0], abs=0.05), pytest.approx(0.5, abs=0.05))
    np.testing.assert_array_equal(good["val_loss"], good["loss"])
    assert bad["val_loss"].size == 0
    assert not np.isfinite(bad["loss"][-1]) or bad["loss"][-1] > 1e6


def torch_mini_batch_regression(x, y, lr, batch_size, epochs, seed):
    """w, b after torch.optim.SGD on nn.Linear with a DataLoader that visits the rows in our order."""
    rng, data = np.random.default_rng(seed), torch.utils.data.TensorDataset(tensor(x), tensor(y))
    layer = torch.nn.Linear(x.shape[1], 1, dtype=torch.float64)
    torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(y)).tolist()
        for xb, yb in torch.utils.data.DataLoader(data, batch_size=batch_size, sampler=order):
            optimizer.zero_grad()
            F.mse_loss(layer(xb)[:, 0], yb).backward()
            optimizer.step()
    return layer.weight.detach().numpy()[0], layer.bias.item()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch_size", [1, 16, 50])
def test_mini_batch_regression_equals_torch_sgd_on_a_dataloader_of_that_batch_size(seed, batch_size):
    rng = rng_for(seed)
    x = rng.normal(size=(50, 3))  # 16 does not divide 50: three batches of 16 and one of 2
    y = x @ [1.0, -0.5, 2.0] + rng.normal(scale=0.2, size=50)
    ours = theory.train_linear_regression(x, y, lr=0.05, batch_size=batch_size, epochs=3, seed=seed)
    w, b = torch_mini_batch_regression(x, y, 0.05, batch_size, 3, seed)
    close(ours["w"], w)
    close(ours["b"], b)


def test_mini_batch_regression_takes_a_1d_x_as_one_feature():
    rng = rng_for(0)
    x = rng.normal(size=30)
    y = 2 * x - 1 + rng.normal(scale=0.1, size=30)
    flat = theory.train_linear_regression(x, y, 0.1, 10, 5, validation=(x[:8], y[:8]))
    column = theory.train_linear_regression(x[:, None], y, 0.1, 10, 5, validation=(x[:8, None], y[:8]))
    assert flat["w"].shape == (1,)
    for key in ("w", "b", "loss", "val_loss"):
        np.testing.assert_array_equal(flat[key], column[key])


# --- metrics ----------------------------------------------------------------------------------------

def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    matrix = theory.confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])


def test_binary_confusion_matrix_is_the_thesis_layout_tp_fn_over_fp_tn():
    y_true, y_pred = [1, 1, 1, 0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 0, 1, 0, 1, 0]  # TP 3, FN 2, FP 1, TN 3
    np.testing.assert_array_equal(theory.binary_confusion_matrix(y_true, y_pred), [[3, 2], [1, 3]])
    np.testing.assert_array_equal(theory.confusion_matrix(y_true, y_pred), [[3, 1], [2, 3]])
    np.testing.assert_array_equal(theory.binary_confusion_matrix(y_true, y_pred, pos_label=0), [[3, 1], [2, 3]])


def test_binary_metrics_of_a_small_example():
    y_true, y_pred = [1, 1, 1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 0, 1]  # TP 3, FN 1, FP 1, TN 3
    assert theory.accuracy(y_true, y_pred) == 0.75
    assert theory.precision(y_true, y_pred) == 0.75
    assert theory.recall(y_true, y_pred) == 0.75
    assert theory.f1(y_true, y_pred) == pytest.approx(0.75)
    assert theory.recall(y_true, y_pred, pos_label=0) == 0.75


def test_always_answering_the_majority_class_scores_95_accuracy_and_0_recall():
    y_true, y_pred = np.r_[np.zeros(95, int), np.ones(5, int)], np.zeros(100, int)
    assert theory.accuracy(y_true, y_pred) == 0.95
    assert theory.recall(y_true, y_pred) == 0.0
    assert theory.precision(y_true, y_pred) == 0.0
    assert theory.f1(y_true, y_pred) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_average_is_the_mean_of_one_class_against_the_rest(seed):
    rng = rng_for(seed)
    y_true, y_pred = rng.integers(0, 4, size=60), rng.integers(0, 4, size=60)
    matrix = theory.confusion_matrix(y_true, y_pred)
    assert theory.accuracy(y_true, y_pred) == pytest.approx(np.trace(matrix) / 60)
    for metric in (theory.precision, theory.recall, theory.f1):
        one_vs_rest = [metric(y_true == c, y_pred == c, pos_label=True) for c in range(4)]
        assert metric(y_true, y_pred, average="macro") == pytest.approx(np.mean(one_vs_rest))
    assert theory.precision(y_true, y_pred, average="macro") == pytest.approx(
        np.mean(np.diag(matrix) / matrix.sum(axis=0)))


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: theory.mse([1.0, 2.0], [1.0, 2.0, 3.0]), "expected equal shapes"),
    (lambda: theory.mae_grad(np.ones((2, 3)), np.ones((3, 2))), "expected equal shapes"),
    (lambda: theory.bce([0.5, 1.2], [0.0, 1.0]), r"prediction must hold probabilities in \[0, 1\]"),
    (lambda: theory.bce([0.5, 0.2], [0.0, -1.0]), r"target must hold probabilities in \[0, 1\]"),
    (lambda: theory.cce([[0.5, np.nan]], [[1.0, 0.0]]), "probabilities"),
    (lambda: theory.mse([], []), "prediction is empty"),
    (lambda: theory.sigmoid([]), "x is empty"),
    (lambda: theory.softmax(np.zeros((2, 0))), "z is empty"),
    (lambda: theory.sgd_step([1.0, 2.0], [1.0], 0.1), "expected equal shapes"),
    (lambda: theory.sgd_step([1.0], [1.0], -0.1), r"lr must lie in \(0"),
    (lambda: theory.rmsprop_step([1.0], [1.0], beta=1.0), r"beta must lie in \[0, 1\)"),
    (lambda: theory.rmsprop_step([1.0, 2.0], [1.0, 2.0], state=[0.0]), "state has shape"),
    (lambda: theory.accuracy([], []), "non-empty 1-D"),
    (lambda: theory.recall([0, 1], [0, 1, 1]), "equal length"),
    (lambda: theory.f1([0, 1, 2], [0, 1, 2]), "use average='macro'"),
    (lambda: theory.precision([0, 1], [0, 1], average="micro"), "average must be one of binary, macro"),
    (lambda: theory.confusion_matrix([0, 3], [0, 1], labels=[0, 1]), "miss classes"),
    (lambda: theory.min_max_scaler([[1.0], [1.0]]), "constant feature"),
    (lambda: theory.model_predict("quartic", [1.0], 1, 0), "model must be one of"),
    (lambda: theory.binary_confusion_matrix([0, 1, 2], [0, 1, 2]), "use confusion_matrix"),
    (lambda: theory.descend(lambda w: w, [1.0], 3, 0.1, method="adam"), "method must be"),
    (lambda: theory.train_linear_regression(np.ones((4, 2)), np.ones(3), 0.1, 2, 1), r"x has shape \(4, 2\)"),
    (lambda: theory.train_linear_regression(np.ones(4), np.ones(4), 0.1, 0, 1), "batch_size must be"),
    (lambda: theory.train_linear_regression(np.ones((4, 2)), np.ones(4), 0.1, 2, 1,
                                            validation=(np.ones((3, 2)), np.ones(2))), "x_val has shape"),
    (lambda: theory.train_linear_regression(np.ones((4, 2)), np.ones(4), 0.1, 2, 1,
                                            validation=(np.ones((3, 5)), np.ones(3))), "x_val has 5 features"),
    (lambda: theory.train_linear_regression(np.ones((4, 2)), np.ones(4), 0.1, 2, 1,
                                            validation=(np.ones((0, 2)), [])), "x_val is empty"),
])
def test_bad_input_raises_value_error_saying_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()
