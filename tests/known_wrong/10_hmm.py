"""Plausible wrong answers for 10_hmm (hidden Markov models), each with the tests it fails.

They are the classic slips of a first forward-backward and Baum-Welch: no scaling, the wrong
normaliser, the initial distribution forgotten, the filtered probabilities taken for the
smoothed ones, the last time point counted as a move, the change of the log-likelihood as the
stopping rule, and the most probable state at each time taken for the most probable path.
"""

WRONG = [
    {
        "answer": "forward",
        "why": "no scaling: recursion (4) on the densities themselves, l = log sum_k alpha_T(k) "
        "(alpha underflows to 0 after a few hundred observations)",
        "source": """def forward(log_b, initial, transition):
    b = np.exp(np.asarray(log_b, dtype=float))
    alpha = np.empty_like(b)
    alpha[0] = np.asarray(initial, dtype=float) * b[0]
    for t in range(1, b.shape[0]):
        alpha[t] = (alpha[t - 1] @ transition) * b[t]
    with np.errstate(divide="ignore", invalid="ignore"):
        return alpha / alpha.sum(axis=1, keepdims=True), float(np.log(alpha[-1].sum()))
""",
        "loses": ["test_forward_long", "test_forward_hidden"],
    },
    {
        "answer": "forward",
        "why": "normalises u_t by its largest entry instead of its sum, and adds the log of that",
        "source": """def forward(log_b, initial, transition):
    log_b = np.asarray(log_b, dtype=float)
    shift = log_b.max(axis=1)
    b = np.exp(log_b - shift[:, None])
    alpha_hat = np.empty_like(b)
    log_c = np.empty(b.shape[0])
    u = np.asarray(initial, dtype=float) * b[0]
    for t in range(b.shape[0]):
        if t > 0:
            u = (alpha_hat[t - 1] @ transition) * b[t]
        alpha_hat[t] = u / u.max()
        log_c[t] = np.log(u.max()) + shift[t]
    return alpha_hat, float(log_c.sum())
""",
        "loses": [
            "test_forward_shape",
            "test_forward_brute",
            "test_forward_long",
            "test_forward_hidden",
        ],
    },
    {
        "answer": "forward",
        "why": "forgets the initial distribution: u_1(k) = f_k(x_1)",
        "source": """def forward(log_b, initial, transition):
    log_b = np.asarray(log_b, dtype=float)
    shift = log_b.max(axis=1)
    b = np.exp(log_b - shift[:, None])
    alpha_hat = np.empty_like(b)
    log_c = np.empty(b.shape[0])
    u = b[0]
    for t in range(b.shape[0]):
        if t > 0:
            u = (alpha_hat[t - 1] @ transition) * b[t]
        alpha_hat[t] = u / u.sum()
        log_c[t] = np.log(u.sum()) + shift[t]
    return alpha_hat, float(log_c.sum())
""",
        "loses": ["test_forward_brute", "test_forward_long", "test_forward_hidden"],
    },
    {
        "answer": "posteriors",
        "why": "no backward pass: the filtered probabilities alpha_hat taken for gamma, and xi "
        "built from them",
        "source": """def posteriors(log_b, initial, transition):
    alpha_hat, loglik = forward(log_b, initial, transition)
    a = np.asarray(transition, dtype=float)
    xi = alpha_hat[:-1, :, None] * a[None] * alpha_hat[1:, None, :]
    xi /= xi.sum(axis=(1, 2), keepdims=True)
    return alpha_hat, xi, loglik
""",
        "loses": ["test_posteriors_margins", "test_posteriors_brute", "test_posteriors_hidden"],
    },
    {
        "answer": "posteriors",
        "why": "xi leaves out the emission density f_k(x_{t+1}) of the second time point",
        "source": """def posteriors(log_b, initial, transition):
    log_b = np.asarray(log_b, dtype=float)
    transition = np.asarray(transition, dtype=float)
    alpha_hat, loglik = forward(log_b, initial, transition)
    b = np.exp(log_b - log_b.max(axis=1, keepdims=True))
    predicted = np.vstack([np.asarray(initial, dtype=float), alpha_hat[:-1] @ transition])
    c = np.sum(predicted * b, axis=1)
    beta_hat = np.ones_like(b)
    for t in range(b.shape[0] - 2, -1, -1):
        beta_hat[t] = transition @ (b[t + 1] * beta_hat[t + 1]) / c[t + 1]
    xi = alpha_hat[:-1, :, None] * transition[None] * beta_hat[1:, None, :]
    xi /= xi.sum(axis=(1, 2), keepdims=True)
    return alpha_hat * beta_hat, xi, loglik
""",
        "loses": ["test_posteriors_margins", "test_posteriors_brute", "test_posteriors_hidden"],
    },
    {
        "answer": "m_step",
        "why": "divides the expected moves out of j by sum_t gamma_t(j) over all T time points, "
        "the last one included (rows of A no longer sum to one)",
        "source": """def m_step(x, gamma, xi, family):
    x = np.asarray(x, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    moves = np.asarray(xi, dtype=float).sum(axis=0)
    weight = gamma.sum(axis=0)
    params = {"startprob": gamma[0].copy(), "transmat": moves / weight[:, None]}
    means = gamma.T @ x / weight
    if family == "poisson":
        params["rates"] = means
    else:
        params["means"] = means
        params["variances"] = np.sum(gamma * (x[:, None] - means) ** 2, axis=0) / weight
    return params
""",
        "loses": ["test_m_step_counts", "test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "the initial distribution as the average of gamma over time (the stationary "
        "share) instead of gamma at the first time point",
        "source": """def m_step(x, gamma, xi, family):
    x = np.asarray(x, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    moves = np.asarray(xi, dtype=float).sum(axis=0)
    transmat = moves / moves.sum(axis=1, keepdims=True)
    params = {"startprob": gamma.mean(axis=0), "transmat": transmat}
    weight = gamma.sum(axis=0)
    means = gamma.T @ x / weight
    if family == "poisson":
        params["rates"] = means
    else:
        params["means"] = means
        params["variances"] = np.sum(gamma * (x[:, None] - means) ** 2, axis=0) / weight
    return params
""",
        "loses": ["test_m_step_counts", "test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "the variances divide by the number of observations T instead of sum_t gamma_t(k)",
        "source": """def m_step(x, gamma, xi, family):
    x = np.asarray(x, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    moves = np.asarray(xi, dtype=float).sum(axis=0)
    params = {"startprob": gamma[0].copy(), "transmat": moves / moves.sum(axis=1, keepdims=True)}
    weight = gamma.sum(axis=0)
    means = gamma.T @ x / weight
    if family == "poisson":
        params["rates"] = means
    else:
        params["means"] = means
        params["variances"] = np.sum(gamma * (x[:, None] - means) ** 2, axis=0) / x.size
    return params
""",
        "loses": ["test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "em",
        "why": "stops on the relative change of the log-likelihood (below tol) instead of "
        "Aitken's bound on the iterates",
        "source": """def em(x, init, tol=1e-8, max_iter=1000):
    family = "poisson" if "rates" in init else "gaussian"
    params = {name: np.array(value, dtype=float) for name, value in init.items()}
    gamma, xi, loglik = posteriors(log_emission(x, params),
            params["startprob"], params["transmat"])
    history = [loglik]
    for _ in range(max_iter):
        params = m_step(x, gamma, xi, family)
        gamma, xi, loglik = posteriors(log_emission(x, params),
            params["startprob"], params["transmat"])
        history.append(loglik)
        if abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            break
    return params, np.array(history)
""",
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "returns the parameters of the last E-step (one M-step behind the history)",
        "source": """def em(x, init, tol=1e-8, max_iter=1000):
    family = "poisson" if "rates" in init else "gaussian"
    params = {name: np.array(value, dtype=float) for name, value in init.items()}
    path = [params]
    history = []
    for _ in range(max_iter):
        gamma, xi, loglik = posteriors(log_emission(x, params),
            params["startprob"], params["transmat"])
        history.append(loglik)
        new = m_step(x, gamma, xi, family)
        path.append(new)
        if converged(path, tol):
            break
        params = new
    return params, np.array(history)
""",
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
    {
        "answer": "viterbi",
        "why": "posterior decoding: the most probable state at each time (argmax of gamma) "
        "instead of the most probable path",
        "source": """def viterbi(log_b, initial, transition):
    gamma, _, _ = posteriors(log_b, initial, transition)
    return np.argmax(gamma, axis=1)
""",
        "loses": ["test_viterbi_brute", "test_viterbi_hidden"],
    },
    {
        "answer": "viterbi",
        "why": "max-product on probabilities instead of logs: the scores underflow to 0 on a "
        "long series and argmax picks state 0",
        "source": """def viterbi(log_b, initial, transition):
    b = np.exp(np.asarray(log_b, dtype=float))
    transition = np.asarray(transition, dtype=float)
    T, K = b.shape
    v = np.asarray(initial, dtype=float) * b[0]
    best_from = np.zeros((T, K), dtype=int)
    for t in range(1, T):
        scores = v[:, None] * transition
        best_from[t] = np.argmax(scores, axis=0)
        v = scores[best_from[t], np.arange(K)] * b[t]
    path = np.empty(T, dtype=int)
    path[-1] = np.argmax(v)
    for t in range(T - 1, 0, -1):
        path[t - 1] = best_from[t, path[t]]
    return path
""",
        "loses": ["test_viterbi_long"],
    },
]
