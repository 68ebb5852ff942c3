"""What the training tests share: a fit judged by the loss on the whole data before and after
(`evaluate`, so dropout and noise layers are off), not by the epochs' mean training losses,
which wander under dropout, noise and small data."""


def assert_fit_lowers_loss(model, x, y, below, **fit_args):
    """Fit `model` on (x, y) (`fit_args` go to fit) and assert that its loss on (x, y) ends
    below `below` times the loss it started from; returns fit's History."""
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, y, verbose=0, **fit_args)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert after < below * before, (before, after)
    return history


def sgd_mse_losses(models, x, y, **fit_args):
    """The epochs' training losses of each of `models` (twins: kilnet's and Keras's, set to
    the same weights) compiled with SGD and mean squared error and fit on (x, y) in order
    (`fit_args` go to fit), for comparing one library's training with the other's."""
    losses = []
    for model in models:
        model.compile(optimizer="sgd", loss="mse")
        losses.append(model.fit(x, y, shuffle=False, verbose=0, **fit_args).history["loss"])
    return losses
