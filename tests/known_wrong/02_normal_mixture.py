"""Plausible wrong answers for 02_normal_mixture; each must lose the tests in ``loses``."""

WRONG = [
    {
        "answer": "e_step",
        "why": "weights each component by the other component's weight, as the lecture notes' "
        "E-step does (component a multiplied by the weight of b)",
        "source": '''def e_step(x, params):
    """Responsibilities, with the weights attached to the wrong components."""
    x = np.asarray(x, dtype=float)
    log_joint = np.log(np.asarray(params["weights"], dtype=float)[::-1]) + stats.norm.logpdf(
        x[:, None], params["means"], params["sds"]
    )
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
''',
        "loses": ["test_e_step_hand", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "divides weighted densities directly (no log space): 0/0 = nan where every "
        "density underflows",
        "source": '''def e_step(x, params):
    """Responsibilities as a ratio of densities."""
    x = np.asarray(x, dtype=float)
    joint = params["weights"] * stats.norm.pdf(x[:, None], params["means"], params["sds"])
    return joint / joint.sum(axis=1, keepdims=True)
''',
        "loses": ["test_e_step_tails", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "returns the weighted variances as sds (the notes label the variance sigma_j)",
        "source": '''def m_step(x, resp):
    """M-step that stores variances under "sds"."""
    x = np.asarray(x, dtype=float)
    resp = np.asarray(resp, dtype=float)
    size = resp.sum(axis=0)
    mu = resp.T @ x / size
    sigma = np.sum(resp * (x[:, None] - mu) ** 2, axis=0) / size
    return {"weights": size / x.size, "means": mu, "sds": sigma}
''',
        "loses": ["test_m_step_labels", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "divides N_j by the number of components instead of the number of observations "
        "(the notes' 1/m in the weight update)",
        "source": '''def m_step(x, resp):
    """M-step with the mixing weights divided by the wrong count."""
    x = np.asarray(x, dtype=float)
    resp = np.asarray(resp, dtype=float)
    size = resp.sum(axis=0)
    mu = resp.T @ x / size
    var = np.sum(resp * (x[:, None] - mu) ** 2, axis=0) / size
    m = resp.shape[1]
    return {"weights": size / m, "means": mu, "sds": np.sqrt(var)}
''',
        "loses": ["test_m_step_labels", "test_m_step_weights", "test_m_step_hidden"],
    },
    {
        "answer": "em",
        "why": "the notes' misplaced bracket np.abs((old - new) < tol): the absolute value of a "
        "boolean, true as soon as the log-likelihood rises, so EM stops after one iteration",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM whose convergence test takes abs() of a comparison."""
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "sds")}
    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        params = m_step(x, e_step(x, params))
        history.append(mixture_loglik(x, params))
        if np.abs((history[-2] - history[-1]) < tol * np.abs(history[-1])):
            break
    return params, np.array(history)
''',
        "loses": ["test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "records the expected complete-data log-likelihood Q instead of the observed-data "
        "log-likelihood",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM that tracks Q(theta | theta_old) rather than the log-likelihood."""
    x = np.asarray(x, dtype=float)
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "sds")}

    def expected_complete(p, r):
        log_joint = np.log(p["weights"]) + stats.norm.logpdf(x[:, None], p["means"], p["sds"])
        return float(np.sum(r * log_joint))

    resp = e_step(x, params)
    history = [expected_complete(params, resp)]
    for _ in range(max_iter):
        params = m_step(x, resp)
        history.append(expected_complete(params, resp))
        resp = e_step(x, params)
        if abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            break
    return params, np.array(history)
''',
        "loses": ["test_em_history", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "stops on the relative change of the log-likelihood, |l_t - l_(t-1)| < tol |l_t|, "
        "the course's old rule: on overlapping components it stops far from the maximum",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM that stops when the log-likelihood barely moves."""
    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "sds")}
    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        params = m_step(x, e_step(x, params))
        history.append(mixture_loglik(x, params))
        if abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            break
    return params, np.array(history)
''',
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "forgets the factor rho / (1 - rho): stops as soon as the relative step is below "
        "tol, which on a slow EM is far from the maximum",
        "source": '''def em(x, init, tol=1e-8, max_iter=1000):
    """EM that stops on the size of the last step alone."""
    from emlib.stopping import step_size

    params = {name: np.array(init[name], dtype=float) for name in ("weights", "means", "sds")}
    history = [mixture_loglik(x, params)]
    for _ in range(max_iter):
        new = m_step(x, e_step(x, params))
        small = step_size(params, new) <= tol
        params = new
        history.append(mixture_loglik(x, params))
        if small:
            break
    return params, np.array(history)
''',
        "loses": ["test_em_stopping_rule"],
    },
    {
        "answer": "m_step_fixed",
        "why": "the notes' original M-step: returns psi = mean(w), the weight of component b, "
        "while the E-step multiplies component a's density by psi",
        "source": '''def m_step_fixed(x, w):
    """The original, inconsistent M-step."""
    u = 1 - w
    mu = np.array([np.sum(u * x) / np.sum(u), np.sum(w * x) / np.sum(w)])
    var_a = np.sum(u * (x - mu[0]) ** 2) / np.sum(u)
    var_b = np.sum(w * (x - mu[1]) ** 2) / np.sum(w)
    sd = np.sqrt(np.array([var_a, var_b]))
    return mu, sd, np.mean(w)
''',
        "loses": [
            "test_m_step_fixed_labels",
            "test_m_step_fixed_monotone",
            "test_m_step_fixed_hidden",
        ],
    },
    {
        "answer": "m_step_fixed",
        "why": "fixes psi (the weight of component a, mean(1 - w)) but returns the weighted "
        "variances as sigma, as the notes label the variance sigma",
        "source": '''def m_step_fixed(x, w):
    """psi repaired, but variances where e_step_ab expects standard deviations."""
    u = 1 - w
    mu = np.array([np.sum(u * x) / np.sum(u), np.sum(w * x) / np.sum(w)])
    var_a = np.sum(u * (x - mu[0]) ** 2) / np.sum(u)
    var_b = np.sum(w * (x - mu[1]) ** 2) / np.sum(w)
    return mu, np.array([var_a, var_b]), float(np.mean(u))
''',
        "loses": ["test_m_step_fixed_labels", "test_m_step_fixed_hidden"],
    },
]
