"""Plausible wrong answers for 08_multivariate_mixture, each with the tests it fails.

They are the classic slips of a first multivariate mixture: the log-determinant without its
half, the determinant itself (which underflows in many dimensions), responsibilities
normalised without log-sum-exp, the weights left out of Bayes' rule, covariances divided by n
or taken about the data's mean, weights that are not normalised, hard assignments in place
of responsibilities, and the change of the log-likelihood as the stopping rule.
"""

WRONG = [
    {
        "answer": "log_mvn",
        "why": "the log-determinant without its half: -log det = -2 sum_a log L_aa",
        "source": """def log_mvn(x, mean, cov):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    chol = np.linalg.cholesky(np.asarray(cov, dtype=float))
    z = solve_triangular(chol, (x - np.asarray(mean, dtype=float)).T, lower=True)
    log_det = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * np.sum(z**2, axis=0) - log_det - 0.5 * x.shape[1] * np.log(2 * np.pi)
""",
        "loses": ["test_log_mvn_scipy", "test_log_mvn_large_d", "test_log_mvn_hidden"],
    },
    {
        "answer": "log_mvn",
        "why": "formula (1) as written, with np.linalg.det and np.linalg.inv (det underflows "
        "to 0 in d = 150-200)",
        "source": """def log_mvn(x, mean, cov):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    cov = np.asarray(cov, dtype=float)
    y = x - np.asarray(mean, dtype=float)
    maha = np.einsum("na,ab,nb->n", y, np.linalg.inv(cov), y)
    return -0.5 * maha - 0.5 * np.log(np.linalg.det(cov)) - 0.5 * x.shape[1] * np.log(2 * np.pi)
""",
        "loses": ["test_log_mvn_large_d", "test_log_mvn_hidden"],
    },
    {
        "answer": "e_step",
        "why": "no log-sum-exp: the densities exponentiated and divided by their sum "
        "(0/0 where they all underflow)",
        "source": """def e_step(x, weights, means, covs):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    dens = np.column_stack(
        [w * np.exp(log_mvn(x, m, c)) for w, m, c in zip(weights, means, covs)]
    )
    total = dens.sum(axis=1)
    return dens / total[:, None], float(np.log(total).sum())
""",
        "loses": ["test_e_step_tiny", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "the weights left out of Bayes' rule: r_ij proportional to phi_d alone",
        "source": """def e_step(x, weights, means, covs):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    log_dens = np.column_stack([log_mvn(x, m, c) for m, c in zip(means, covs)])
    log_joint = np.log(np.asarray(weights, dtype=float)) + log_dens
    return np.exp(log_dens - logsumexp(log_dens, axis=1)[:, None]), float(
        logsumexp(log_joint, axis=1).sum()
    )
""",
        "loses": ["test_e_step_hand", "test_e_step_tiny", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "means and covariances divided by n instead of N_j",
        "source": """def m_step(x, resp):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    resp = np.asarray(resp, dtype=float)
    n = x.shape[0]
    size = resp.sum(axis=0)
    means = resp.T @ x / n
    covs = np.array([(resp[:, j, None] * (x - means[j])).T @ (x - means[j]) / n
                     for j in range(size.size)])
    return {"weights": size / n, "means": means, "covariances": covs}
""",
        "loses": ["test_m_step_labels", "test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "covariances about the data's overall mean, not the component's new mean",
        "source": """def m_step(x, resp):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    resp = np.asarray(resp, dtype=float)
    size = resp.sum(axis=0)
    means = resp.T @ x / size[:, None]
    y = x - x.mean(axis=0)
    covs = np.array([(resp[:, j, None] * y).T @ y / size[j] for j in range(size.size)])
    return {"weights": size / x.shape[0], "means": means, "covariances": covs}
""",
        "loses": ["test_m_step_labels", "test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "weights not normalised: w_j = N_j instead of N_j / n",
        "source": """def m_step(x, resp):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    resp = np.asarray(resp, dtype=float)
    size = resp.sum(axis=0)
    means = resp.T @ x / size[:, None]
    covs = np.array([(resp[:, j, None] * (x - means[j])).T @ (x - means[j]) / size[j]
                     for j in range(size.size)])
    return {"weights": size, "means": means, "covariances": covs}
""",
        "loses": ["test_m_step_labels", "test_m_step_soft", "test_m_step_hidden"],
    },
    {
        "answer": "em",
        "why": "hard assignments: each point given wholly to its most responsible component "
        "(classification EM, which maximises another criterion)",
        "source": """def em(x, init, tol=1e-8, max_iter=1000):
    params = {name: np.array(value, dtype=float) for name, value in init.items()}
    path = [params]
    resp, loglik = e_step(x, params["weights"], params["means"], params["covariances"])
    history = [loglik]
    for _ in range(max_iter):
        hard = np.eye(resp.shape[1])[np.argmax(resp, axis=1)]
        params = m_step(x, hard)
        path.append(params)
        resp, loglik = e_step(x, params["weights"], params["means"], params["covariances"])
        history.append(loglik)
        if converged(path, tol):
            break
    return params, np.array(history)
""",
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "stops on the change of the log-likelihood, |l_t - l_(t-1)| < tol",
        "source": """def em(x, init, tol=1e-8, max_iter=1000):
    params = {name: np.array(value, dtype=float) for name, value in init.items()}
    resp, loglik = e_step(x, params["weights"], params["means"], params["covariances"])
    history = [loglik]
    for _ in range(max_iter):
        params = m_step(x, resp)
        resp, loglik = e_step(x, params["weights"], params["means"], params["covariances"])
        history.append(loglik)
        if abs(history[-1] - history[-2]) < tol:
            break
    return params, np.array(history)
""",
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
]
