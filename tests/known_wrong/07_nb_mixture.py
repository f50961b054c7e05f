"""Plausible wrong answers for 07_nb_mixture; each must lose the tests in ``loses``."""

WRONG = [
    {
        "answer": "e_step",
        "why": "softmax of the components' NB log-pmfs without the log mixing weights, as the "
        "source notebook's E-step does (equal weights assumed)",
        "source": '''def e_step(x, params):
    """Responsibilities from the log-pmfs alone: the mixing weights are left out."""
    x = np.asarray(x, dtype=float)
    log_f = nb_logpmf(x[:, None], params["means"], params["thetas"])
    return np.exp(log_f - logsumexp(log_f, axis=1, keepdims=True))
''',
        "loses": ["test_e_step_hand", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "divides weighted pmfs directly (no log space): 0/0 = nan where every pmf "
        "underflows",
        "source": '''def e_step(x, params):
    """Responsibilities as a ratio of probabilities."""
    x = np.asarray(x, dtype=float)
    joint = np.asarray(params["weights"]) * np.exp(
        nb_logpmf(x[:, None], params["means"], params["thetas"])
    )
    with np.errstate(invalid="ignore"):
        return joint / joint.sum(axis=1, keepdims=True)
''',
        "loses": ["test_e_step_tails", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "the source notebook's M-step objective: log(r) ADDED to each count's NB "
        "log-likelihood instead of weighting it by r, so every component is fitted to all "
        "the counts",
        "source": '''def m_step(x, resp):
    """Each component minimises -sum_i [log r_ij + log f(x_i; mu, theta)] over (mu, theta)."""
    x = np.asarray(x, dtype=float)
    resp = np.asarray(resp, dtype=float)
    k = resp.shape[1]
    means, thetas = np.empty(k), np.empty(k)
    for j in range(k):
        r = resp[:, j]

        def objective(log_par, r=r):
            mu, theta = np.exp(log_par)
            return -np.sum(np.log(r + 1e-8) + nb_logpmf(x, mu, theta))

        start = np.log([r @ x / r.sum(), 10.0])
        best = optimize.minimize(
            objective, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10}
        )
        means[j], thetas[j] = np.exp(best.x)
    return {"weights": resp.mean(axis=0), "means": means, "thetas": thetas}
''',
        "loses": ["test_m_step_labels", "test_m_step_theta", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "never updates the mixing weights (keeps them equal, 1/k), as the source "
        "notebook never estimates them",
        "source": '''def m_step(x, resp):
    """Correct weighted means and sizes, but equal mixing weights."""
    x = np.asarray(x, dtype=float)
    resp = np.asarray(resp, dtype=float)
    k = resp.shape[1]
    size = resp.sum(axis=0)
    mu = resp.T @ x / size
    theta = np.full(k, np.inf)
    for j in range(k):
        r = resp[:, j]
        if np.sum(r * x * (x - 1)) <= size[j] * mu[j] ** 2:
            continue

        def negative_q(log_t, r=r, m=mu[j]):
            t = np.exp(log_t)
            terms = gammaln(x + t) - gammaln(t) + t * np.log(t) - (x + t) * np.log(m + t)
            return -np.sum(r * terms)

        best = optimize.minimize_scalar(
            negative_q,
            bounds=(np.log(1e-6), np.log(1e8)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        theta[j] = np.exp(best.x)
    return {"weights": np.full(k, 1 / k), "means": mu, "thetas": theta}
''',
        "loses": ["test_m_step_weights", "test_m_step_hidden"],
    },
    {
        "answer": "em",
        "why": "the source notebook's EM: an M-step that adds log(r) to the log-likelihood "
        "(so every component is fitted to all counts) and an E-step without mixing weights",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM with the log(r) objective and a weightless softmax E-step."""
    x = np.asarray(x, dtype=float)
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "thetas")}
    k = params["means"].size

    def objective(log_par, r):
        mu, theta = np.exp(log_par)
        return -np.sum(np.log(r + 1e-8) + nb_logpmf(x, mu, theta))

    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        log_f = nb_logpmf(x[:, None], params["means"], params["thetas"])
        resp = np.exp(log_f - logsumexp(log_f, axis=1, keepdims=True))
        means, thetas = np.empty(k), np.empty(k)
        for j in range(k):
            start = np.log([resp[:, j] @ x / resp[:, j].sum(), 10.0])
            best = optimize.minimize(objective, start, args=(resp[:, j],), method="Nelder-Mead")
            means[j], thetas[j] = np.exp(best.x)
        params = {"weights": np.full(k, 1 / k), "means": means, "thetas": thetas}
        history.append(mixture_loglik(x, params))
        if abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            break
    order = np.argsort(params["means"])
    return {name: value[order] for name, value in params.items()}, np.array(history)
''',
        "loses": ["test_em_monotone", "test_em_recovers", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "correct M-step for the means and sizes, but the E-step leaves out the mixing "
        "weights and the weights stay at 1/k",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM that never estimates or uses the mixing weights."""
    x = np.asarray(x, dtype=float)
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "thetas")}
    k = params["means"].size
    params["weights"] = np.full(k, 1 / k)
    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        log_f = nb_logpmf(x[:, None], params["means"], params["thetas"])
        resp = np.exp(log_f - logsumexp(log_f, axis=1, keepdims=True))
        params = m_step(x, resp)
        params["weights"] = np.full(k, 1 / k)
        history.append(mixture_loglik(x, params))
        if abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            break
    order = np.argsort(params["means"])
    return {name: value[order] for name, value in params.items()}, np.array(history)
''',
        "loses": ["test_em_recovers", "test_em_history", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "stops on the relative change of the log-likelihood, |l_t - l_(t-1)| < tol |l_t|, "
        "the chapter's old rule, instead of Aitken's bound on the distance to the maximum",
        "source": """def em(x, init, tol=1e-8, max_iter=1000):
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "thetas")}
    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        params = m_step(x, e_step(x, params))
        history.append(mixture_loglik(x, params))
        if abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            break
    order = np.argsort(params["means"])
    return {name: value[order] for name, value in params.items()}, np.array(history)
""",
        "loses": ["test_em_stopping_rule"],
    },
    {
        "answer": "bic",
        "why": "counts 3k parameters, forgetting that the mixing weights sum to one",
        "source": '''def bic(loglik, k, n):
    """BIC with one parameter too many."""
    return float(-2.0 * loglik + 3 * k * np.log(n))
''',
        "loses": ["test_bic_hand", "test_bic_params", "test_bic_hidden"],
    },
    {
        "answer": "bic",
        "why": "uses the log-likelihood without the factor -2 (-loglik + p log n)",
        "source": '''def bic(loglik, k, n):
    """BIC missing the factor 2 on the log-likelihood."""
    return float(-loglik + (3 * k - 1) * np.log(n))
''',
        "loses": ["test_bic_hand", "test_bic_hidden"],
    },
    {
        "answer": "objective_fixed",
        "why": "the source notebook's objective: log(r) ADDED to each count's NB log-likelihood, "
        "a constant in (mu, theta), so the responsibilities play no part",
        "source": '''def objective_fixed(log_par, x, r):
    """-sum_i [log r_i + log f(x_i; mu, theta)]."""
    mu, theta = np.exp(log_par)
    return -np.sum(np.log(r + 1e-8) + nb_logpmf(x, mu, theta))
''',
        "loses": [
            "test_objective_fixed_hand",
            "test_objective_fixed_zero",
            "test_objective_fixed_hidden",
        ],
    },
    {
        "answer": "objective_fixed",
        "why": "sees that log(r) is a constant and drops it, leaving the unweighted NB "
        "log-likelihood of all the counts: every component still fits every count",
        "source": '''def objective_fixed(log_par, x, r):
    """The log(r) term dropped: -sum_i log f(x_i; mu, theta)."""
    mu, theta = np.exp(log_par)
    return -np.sum(nb_logpmf(x, mu, theta))
''',
        "loses": [
            "test_objective_fixed_hand",
            "test_objective_fixed_zero",
            "test_objective_fixed_hidden",
        ],
    },
    {
        "answer": "objective_fixed",
        "why": "weights each count's log-likelihood by r but returns Q_j itself, not -Q_j, to a "
        "minimiser",
        "source": '''def objective_fixed(log_par, x, r):
    """Q_j, the function to maximise, without the minus sign."""
    mu, theta = np.exp(log_par)
    return np.sum(r * nb_logpmf(x, mu, theta))
''',
        "loses": ["test_objective_fixed_hand", "test_objective_fixed_hidden"],
    },
]
