"""What :func:`greybox.fit` did: :class:`History`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["History"]


@dataclass(frozen=True, repr=False)
class History:
    """What :func:`fit` did: one record per epoch (training loss, validation loss and
    metrics, seconds), the best epoch, whether training stopped early, and with
    ``select="kfold"`` the held-out figures that decided whether to train.

    ``repr`` is one line; ``str`` adds the epochs as a table (the best epoch marked) and
    the k-fold decision; in Jupyter it shows as an HTML table.

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> model = gb.GreyBox("input x: real[0, 10]  output y: bool  rule r: x > ~5 -> y",
    ...                    semantics="product")
    >>> x = np.linspace(0, 10, 40)
    >>> history = model.fit({"x": x}, {"y": x > 6}, epochs=3, validation=0.25, seed=0,
    ...                     progress=False)
    >>> history.best_epoch, list(history.to_frame().columns)
    (3, ['loss', 'val_loss', 'val_y_accuracy', 'seconds'])
    >>> print(str(history).splitlines()[0])
    History(3 epochs; last: loss ..., val_loss ..., val_y_accuracy ...; best epoch 3)
    """

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    #: with ``fit(select="kfold")``: one record per candidate, the model as given (0
    #: epochs) and trained: held-out ``loss``, accuracy or squared error per labelled
    #: variable, ``score``, its ``gain`` over the model as given, the held-out labels
    #: training ``fixed`` and ``broken``, and the sign test's ``p_value``
    selection: list[dict] = field(default_factory=list)
    #: with ``fit(select="kfold")``: the epochs trained (0: the model as given)
    selected_epochs: int | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch (index: epoch): ``loss``, the validation figures when
        there was a validation set (``val_loss``, ``val_<name>_accuracy``...),
        ``temperature`` when annealed, and ``seconds``."""
        return pd.DataFrame(self.epochs).set_index("epoch") if self.epochs else pd.DataFrame()

    def selection_frame(self) -> pd.DataFrame:
        """The k-fold selection's records, one row per candidate (index: epochs)."""
        return (pd.DataFrame(self.selection).set_index("epochs") if self.selection
                else pd.DataFrame())

    def _marked(self) -> pd.DataFrame:
        """The epochs table with a ``note`` column: the best epoch, where training stopped
        early."""
        frame = self.to_frame()
        if frame.empty:
            return frame
        note = pd.Series("", index=frame.index)
        if self.best_epoch in note.index:
            note[self.best_epoch] = ("best (lowest val_loss)" if "val_loss" in frame
                                     else "best (last: no validation set)")
        if self.stopped_early:
            last = frame.index[-1]
            note[last] = ", ".join(filter(None, [note[last], "stopped early"]))
        return frame.assign(note=note)

    def _decision(self) -> str:
        """The k-fold selection's decision in words ("" without one)."""
        if self.selected_epochs is None or len(self.selection) != 2:
            return ""
        given, trained = self.selection
        verdict = (f"trained {self.selected_epochs} epochs" if self.selected_epochs
                   else "kept the model as given (0 epochs)")
        return (f"k-fold selection {verdict}: held-out score {given['score']:.4g} as given, "
                f"{trained['score']:.4g} after {trained['epochs']} epochs; training fixed "
                f"{trained['fixed']} and broke {trained['broken']} held-out labels (sign "
                f"test p = {trained['p_value']:.3g})")

    def __repr__(self) -> str:
        chosen = ("" if self.selected_epochs is None else
                  f"; k-fold selection kept {self.selected_epochs} epochs")
        if not self.epochs:
            return f"History(no epochs{chosen})"
        last = self.epochs[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if k not in ("epoch", "seconds") and isinstance(v, float))
        stop = (f"; stopped early after epoch {last['epoch']}, the best restored"
                if self.stopped_early else "")
        return (f"History({len(self.epochs)} epochs; last: {shown}; best epoch "
                f"{self.best_epoch}{stop}{chosen})")

    def __str__(self) -> str:
        lines = [repr(self)]
        if self.epochs:
            lines.append(self._marked().to_string(float_format="{:.4g}".format,
                                                  max_rows=20))
        if self._decision():
            lines.append(self._decision())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        parts = [f"<pre>{html.escape(repr(self))}</pre>"]
        with pd.option_context("display.float_format", "{:.4g}".format):   # as str
            if self.epochs:
                parts.append(self._marked()._repr_html_())
            if self._decision():
                parts.append(f"<p>{html.escape(self._decision())}</p>"
                             + self.selection_frame()._repr_html_())
        return "<div>" + "".join(parts) + "</div>"
