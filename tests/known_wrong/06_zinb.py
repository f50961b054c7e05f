"""Plausible wrong answers for 06_zinb (zero-inflated negative binomial) and the tests they fail.

The source post's pseudocode leaves the (mu, theta) update as a placeholder; the first EM
answer below runs it that way (theta never updated). The others are the usual slips: scipy's
nbinom parameterisation, dropping -log y!, the Poisson zero probability in the E-step,
dividing by the number of zeros, ignoring the weights, and returning the dispersion 1/theta.
Issue 10 added the Poisson limit theta = inf, which EM reaches on many of the chapter's genes:
the NB formulas evaluated there as written (nan), and EM loops that avoid or mishandle it.
"""

WRONG = [
    {
        "answer": "nb_logpmf",
        "why": "parameterisation mix-up: scipy's nbinom with p = mu / (mu + theta)",
        "source": """def nb_logpmf(y, mu, theta):
    return stats.nbinom.logpmf(y, theta, mu / (mu + theta))
""",
        "loses": [
            "test_nb_logpmf_hand",
            "test_nb_logpmf_moments",
            "test_nb_logpmf_large",
            "test_nb_logpmf_hidden",
        ],
    },
    {
        "answer": "nb_logpmf",
        "why": "drops the -log y! term",
        "source": """def nb_logpmf(y, mu, theta):
    y = np.asarray(y, dtype=float)
    return (gammaln(y + theta) - gammaln(theta)
            + theta * np.log(theta / (theta + mu)) + xlogy(y, mu / (theta + mu)))
""",
        "loses": [
            "test_nb_logpmf_hand",
            "test_nb_logpmf_moments",
            "test_nb_logpmf_large",
            "test_nb_logpmf_hidden",
        ],
    },
    {
        "answer": "nb_logpmf",
        "why": "evaluates Gamma and y! themselves, which overflow for large counts",
        "source": """def nb_logpmf(y, mu, theta):
    from scipy.special import factorial, gamma

    y = np.asarray(y, dtype=float)
    coef = gamma(y + theta) / (factorial(y) * gamma(theta))
    return np.log(coef * (theta / (theta + mu)) ** theta * (mu / (theta + mu)) ** y)
""",
        "loses": ["test_nb_logpmf_large"],
    },
    {
        "answer": "nb_logpmf",
        "why": "the NB formula alone, also at theta = inf: gammaln(inf) - gammaln(inf) and "
        "inf * log(1) are nan there, not the Poisson limit",
        "source": """def nb_logpmf(y, mu, theta):
    y = np.asarray(y, dtype=float)
    mu = np.asarray(mu, dtype=float)
    theta = np.asarray(theta, dtype=float)
    return (
        gammaln(y + theta)
        - gammaln(theta)
        - gammaln(y + 1.0)
        + theta * np.log(theta / (theta + mu))
        + xlogy(y, mu / (theta + mu))
    )
""",
        "loses": ["test_nb_logpmf_poisson", "test_zinb_em_poisson_limit"],
    },
    {
        "answer": "e_step",
        "why": "gives every observation the zero's posterior, positive counts included",
        "source": """def e_step(y, mu, theta, pi):
    y = np.asarray(y)
    mu = np.broadcast_to(np.asarray(mu, dtype=float), y.shape)
    return pi / (pi + (1 - pi) * (theta / (theta + mu)) ** theta)
""",
        "loses": ["test_e_step_positive", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "uses the Poisson zero probability exp(-mu) instead of the NB's "
        "(theta/(theta+mu))^theta",
        "source": """def e_step(y, mu, theta, pi):
    y = np.asarray(y)
    mu = np.broadcast_to(np.asarray(mu, dtype=float), y.shape)
    return np.where(y == 0, pi / (pi + (1 - pi) * np.exp(-mu)), 0.0)
""",
        "loses": ["test_e_step_value", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "evaluates the NB zero probability exp(-theta log(1 + mu/theta)) also at "
        "theta = inf, where it is exp(-inf * 0) = nan instead of exp(-mu)",
        "source": """def e_step(y, mu, theta, pi):
    y = np.asarray(y)
    mu = np.broadcast_to(np.asarray(mu, dtype=float), y.shape)
    nb_zero = np.exp(-theta * np.log1p(mu / theta))
    return np.where(y == 0, pi / (pi + (1 - pi) * nb_zero), 0.0)
""",
        "loses": ["test_e_step_poisson", "test_zinb_em_poisson_limit"],
    },
    {
        "answer": "m_step_pi_mu",
        "why": "pi = sum(resp) / (number of zeros) instead of / n",
        "source": """def m_step_pi_mu(y, resp):
    y = np.asarray(y, dtype=float)
    resp = np.asarray(resp, dtype=float)
    w = 1 - resp
    return float(resp.sum() / np.sum(y == 0)), float(np.sum(w * y) / np.sum(w))
""",
        "loses": ["test_m_step_pi_mu_hand", "test_m_step_pi_mu_hidden"],
    },
    {
        "answer": "m_step_pi_mu",
        "why": "mu = unweighted mean of the counts, ignoring the responsibilities",
        "source": """def m_step_pi_mu(y, resp):
    return float(np.mean(resp)), float(np.mean(y))
""",
        "loses": ["test_m_step_pi_mu_hand", "test_m_step_pi_mu_hidden"],
    },
    {
        "answer": "fit_theta",
        "why": "ignores the weights (an unweighted NB fit of theta)",
        "source": """def fit_theta(y, weights, mu):
    y = np.asarray(y, dtype=float)
    n = y.size
    D = np.sum((y - mu) ** 2 - y)
    if D <= 0:
        return np.inf

    def score(x):
        t = np.exp(x)
        return np.sum(digamma(y + t) - digamma(t) + (mu - y) / (t + mu)) - n * np.log1p(mu / t)

    lo = hi = np.log(n * mu**2 / D)
    while score(lo) <= 0:
        lo -= 1.0
    while score(hi) >= 0:
        hi += 1.0
    return float(np.exp(optimize.brentq(score, lo, hi, xtol=1e-12, rtol=1e-12)))
""",
        "loses": ["test_fit_theta_score", "test_fit_theta_weights", "test_fit_theta_hidden"],
    },
    {
        "answer": "fit_theta",
        "why": "returns the dispersion 1/theta instead of the size theta",
        "source": """def fit_theta(y, weights, mu):
    y = np.asarray(y, dtype=float)
    w = np.asarray(weights, dtype=float)
    D = np.sum(w * ((y - mu) ** 2 - y))
    if D <= 0:
        return 0.0
    W = np.sum(w)

    def score(x):
        t = np.exp(x)
        terms = digamma(y + t) - digamma(t) + (mu - y) / (t + mu)
        return np.sum(w * terms) - W * np.log1p(mu / t)

    lo = hi = np.log(W * mu**2 / D)
    while score(lo) <= 0:
        lo -= 1.0
    while score(hi) >= 0:
        hi += 1.0
    return float(1.0 / np.exp(optimize.brentq(score, lo, hi, xtol=1e-12, rtol=1e-12)))
""",
        "loses": ["test_fit_theta_score", "test_fit_theta_poisson", "test_fit_theta_hidden"],
    },
    {
        "answer": "fit_theta",
        "why": "uses the profile score without the (mu - y)/(theta + mu) term, right only when "
        "mu is the weighted mean",
        "source": """def fit_theta(y, weights, mu):
    y = np.asarray(y, dtype=float)
    w = np.asarray(weights, dtype=float)
    D = np.sum(w * ((y - mu) ** 2 - y))
    if D <= 0:
        return np.inf
    W = np.sum(w)

    def score(x):
        t = np.exp(x)
        return np.sum(w * (digamma(y + t) - digamma(t))) - W * np.log1p(mu / t)

    lo = hi = np.log(W * mu**2 / D)
    for _ in range(60):
        if score(lo) > 0:
            break
        lo -= 1.0
    for _ in range(60):
        if score(hi) < 0:
            break
        hi += 1.0
    return float(np.exp(optimize.brentq(score, lo, hi, xtol=1e-12, rtol=1e-12)))
""",
        "loses": ["test_fit_theta_score", "test_fit_theta_hidden"],
    },
    {
        "answer": "zinb_em",
        "why": "the source's placeholder: the M-step updates pi and mu but never theta",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-10, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi, mu = m_step_pi_mu(y, resp)
        history.append(loglik(mu, theta, pi))
        if abs(history[-1] - history[-2]) <= tol * max(abs(history[-1]), 1.0):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_gradient", "test_zinb_em_hidden"],
    },
    {
        "answer": "zinb_em",
        "why": "fits the NB to all counts with weight 1, ignoring the responsibilities",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-10, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi = float(np.mean(resp))
        mu = float(np.mean(y))
        theta = fit_theta(y, np.ones(y.size), mu)
        history.append(loglik(mu, theta, pi))
        if abs(history[-1] - history[-2]) <= tol * max(abs(history[-1]), 1.0):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_gradient", "test_zinb_em_hidden"],
    },
    {
        "answer": "zinb_em",
        "why": "stops on the relative change of the log-likelihood, the course's old rule, "
        "instead of Aitken's bound on the distance to the maximum",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-8, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi, mu = m_step_pi_mu(y, resp)
        theta = fit_theta(y, 1.0 - resp, mu)
        history.append(loglik(mu, theta, pi))
        if abs(history[-1] - history[-2]) <= tol * max(abs(history[-1]), 1.0):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_stopping_rule"],
    },
    {
        "answer": "zinb_em",
        "why": "the source's rule: stops when |pi_new - pi| < tol, watching one parameter's last "
        "step and not the distance still to go",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-8, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi_new, mu = m_step_pi_mu(y, resp)
        theta = fit_theta(y, 1.0 - resp, mu)
        small = abs(pi_new - pi) < tol
        pi = pi_new
        history.append(loglik(mu, theta, pi))
        if small:
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_stopping_rule"],
    },
    {
        "answer": "zinb_em",
        "why": "treats theta = inf from fit_theta as a failed fit and keeps the previous theta, "
        "so EM never reaches the Poisson limit",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-8, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    iterates = [(mu, theta, pi)]
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi, mu = m_step_pi_mu(y, resp)
        theta_new = fit_theta(y, 1.0 - resp, mu)
        if np.isfinite(theta_new):
            theta = theta_new
        iterates.append((mu, theta, pi))
        history.append(loglik(mu, theta, pi))
        if converged(iterates, tol):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_poisson_limit"],
    },
    {
        "answer": "zinb_em",
        "why": "caps theta at 1e6 so that nothing is infinite: the NB with theta = 1e6 is not "
        "the Poisson limit (1/theta = 1e-6, not 0)",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-8, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = nb_logpmf(y, mu, theta)
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    iterates = [(mu, theta, pi)]
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi, mu = m_step_pi_mu(y, resp)
        theta = min(fit_theta(y, 1.0 - resp, mu), 1e6)
        iterates.append((mu, theta, pi))
        history.append(loglik(mu, theta, pi))
        if converged(iterates, tol):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_poisson_limit"],
    },
    {
        "answer": "zinb_em",
        "why": "computes the log-likelihood with scipy.stats.nbinom (n = theta, "
        "p = theta/(theta+mu)), which is nan at theta = inf",
        "source": """def zinb_em(y, mu0, theta0, pi0, tol=1e-8, max_iter=10_000):
    y = np.asarray(y)

    def loglik(mu, theta, pi):
        log_nb = stats.nbinom.logpmf(y, theta, theta / (theta + mu))
        log_zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        return float(np.sum(np.where(y == 0, log_zero, np.log1p(-pi) + log_nb)))

    mu, theta, pi = float(mu0), float(theta0), float(pi0)
    iterates = [(mu, theta, pi)]
    history = [loglik(mu, theta, pi)]
    for _ in range(max_iter):
        resp = e_step(y, mu, theta, pi)
        pi, mu = m_step_pi_mu(y, resp)
        theta = fit_theta(y, 1.0 - resp, mu)
        iterates.append((mu, theta, pi))
        history.append(loglik(mu, theta, pi))
        if converged(iterates, tol):
            break
    return mu, theta, pi, np.array(history)
""",
        "loses": ["test_zinb_em_poisson_limit"],
    },
]
