"""emlib: the reference Expectation–Maximization library behind the EM course.

One module per model, each with the same four functions: ``e_step``, ``m_step``,
``loglik`` and ``fit``. Every ``fit`` runs on the one driver in :mod:`emlib.em` and
returns an :class:`~emlib.em.EMResult`; :mod:`emlib.convergence` holds the stopping
rules, the monotonicity guard, the rate of convergence and SQUAREM. :mod:`emlib.hmm`
(hidden Markov models) adds ``posterior`` and ``viterbi`` decoding.
"""

from emlib.convergence import ConvergenceWarning, MonotonicityError, rate
from emlib.em import EMResult

__all__ = ["ConvergenceWarning", "EMResult", "MonotonicityError", "rate"]
__version__ = "0.1.0"
