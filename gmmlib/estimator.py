"""scikit-learn's estimator protocol, without importing scikit-learn.

`Estimator` gives a class whose ``__init__`` only stores its keyword arguments what
scikit-learn's ``BaseEstimator`` gives: ``get_params``/``set_params`` (so ``clone``, Pipeline and
GridSearchCV work), a ``repr`` showing the parameters that differ from their defaults, and the
tags scikit-learn's checks read. `GaussianMixture` is one.
"""

from __future__ import annotations

import inspect

__all__ = ["Estimator"]


class Estimator:
    """Parameters by name, as scikit-learn's ``BaseEstimator`` reads them from ``__init__``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """The parameters of ``__init__``, as scikit-learn's BaseEstimator reads them."""
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's parameters, by name (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set parameters by name (checked later, in `fit`, as scikit-learn does); returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """``Name(...)`` with the parameters that differ from their defaults."""
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if repr(value) != repr(defaults[name].default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        """scikit-learn's tags: a density estimator on dense float data. Only scikit-learn calls
        this, so importing it here keeps gmmlib free of it at import time."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(),
        )
