"""Plausible wrong answers for 09_missing_data (EM for a normal sample with values missing).

They are the classic slips of a first missing-data EM: the Schur complement with the wrong sign
or left out, the inverse of Σ_oo taken entry by entry, imputation without the conditional
variance (or with the column means), the wrong divisor in the M-step, the full dimension in
every row's log 2π, and EM stopped on the change of the log-likelihood.
"""

WRONG = [
    {
        "answer": "conditional",
        "why": "adds B Σ_om to Σ_mm instead of subtracting it (knowing x_o should shrink the "
        "variance)",
        "source": """def conditional(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    mis = np.isnan(x)
    obs = ~mis
    b = np.linalg.solve(cov[np.ix_(obs, obs)], cov[np.ix_(obs, mis)]).T
    cond_mean = mean[mis] + b @ (x[obs] - mean[obs])
    cond_cov = cov[np.ix_(mis, mis)] + b @ cov[np.ix_(obs, mis)]
    return cond_mean, cond_cov
""",
        "loses": ["test_conditional_2d", "test_conditional_3d", "test_conditional_hidden"],
    },
    {
        "answer": "conditional",
        "why": "returns the marginal covariance Σ_mm as the conditional one",
        "source": """def conditional(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    mis = np.isnan(x)
    obs = ~mis
    b = np.linalg.solve(cov[np.ix_(obs, obs)], cov[np.ix_(obs, mis)]).T
    return mean[mis] + b @ (x[obs] - mean[obs]), cov[np.ix_(mis, mis)]
""",
        "loses": ["test_conditional_2d", "test_conditional_3d", "test_conditional_hidden"],
    },
    {
        "answer": "conditional",
        "why": "inverts Σ_oo entry by entry (1 / its diagonal): right with one observed value, "
        "wrong with two or more",
        "source": """def conditional(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    mis = np.isnan(x)
    obs = ~mis
    b = cov[np.ix_(mis, obs)] / np.diag(cov)[obs]
    cond_mean = mean[mis] + b @ (x[obs] - mean[obs])
    cond_cov = cov[np.ix_(mis, mis)] - b @ cov[np.ix_(obs, mis)]
    return cond_mean, cond_cov
""",
        "loses": ["test_conditional_hidden"],
    },
    {
        "answer": "e_step",
        "why": "imputes the conditional mean and forgets the conditional covariance C_i in "
        "E[T_2] (single imputation: the covariance comes out too small)",
        "source": """def e_step(x, mean, cov):
    x = np.asarray(x, dtype=float)
    d = x.shape[1]
    sum_x = np.zeros(d)
    sum_xx = np.zeros((d, d))
    for row in x:
        mis = np.isnan(row)
        filled = row.copy()
        if mis.any():
            filled[mis] = conditional(row, mean, cov)[0]
        sum_x += filled
        sum_xx += np.outer(filled, filled)
    return sum_x, sum_xx
""",
        "loses": ["test_e_step_values", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "fills each missing value with the current mean of its column, ignoring the "
        "row's observed values",
        "source": """def e_step(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    d = x.shape[1]
    sum_x = np.zeros(d)
    sum_xx = np.zeros((d, d))
    for row in x:
        mis = np.isnan(row)
        filled = np.where(mis, mean, row)
        correction = np.zeros((d, d))
        if mis.any():
            correction[np.ix_(mis, mis)] = conditional(row, mean, cov)[1]
        sum_x += filled
        sum_xx += np.outer(filled, filled) + correction
    return sum_x, sum_xx
""",
        "loses": ["test_e_step_values", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "divides the covariance by n - 1 (the unbiased sample covariance, not the MLE)",
        "source": """def m_step(x, sum_x, sum_xx):
    n = np.shape(x)[0]
    mean = np.asarray(sum_x, dtype=float) / n
    cov = (np.asarray(sum_xx, dtype=float) - n * np.outer(mean, mean)) / (n - 1)
    return mean, (cov + cov.T) / 2
""",
        "loses": ["test_m_step_values", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "divides each column by its number of observed values instead of n",
        "source": """def m_step(x, sum_x, sum_xx):
    n_obs = (~np.isnan(np.asarray(x, dtype=float))).sum(axis=0)
    mean = np.asarray(sum_x, dtype=float) / n_obs
    scale = np.sqrt(np.outer(n_obs, n_obs))
    cov = np.asarray(sum_xx, dtype=float) / scale - np.outer(mean, mean)
    return mean, (cov + cov.T) / 2
""",
        "loses": ["test_m_step_values", "test_m_step_hidden"],
    },
    {
        "answer": "loglik",
        "why": "uses the full dimension d in every row's log 2π term, whatever the row observes",
        "source": """def loglik(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    d = x.shape[1]
    total = 0.0
    for row in x:
        obs = ~np.isnan(row)
        factor = np.linalg.cholesky(cov[np.ix_(obs, obs)])
        white = np.linalg.solve(factor, row[obs] - mean[obs])
        total -= 0.5 * (d * np.log(2 * np.pi) + 2 * np.log(np.diag(factor)).sum()
                        + white @ white)
    return float(total)
""",
        "loses": ["test_loglik_values", "test_loglik_hidden"],
    },
    {
        "answer": "loglik",
        "why": "takes log det Σ_oo without the factor 1/2 (twice the log of the Cholesky "
        "diagonal, then not halved)",
        "source": """def loglik(x, mean, cov):
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    total = 0.0
    for row in x:
        obs = ~np.isnan(row)
        factor = np.linalg.cholesky(cov[np.ix_(obs, obs)])
        white = np.linalg.solve(factor, row[obs] - mean[obs])
        total -= 0.5 * (obs.sum() * np.log(2 * np.pi) + white @ white)
        total -= 2 * np.log(np.diag(factor)).sum()
    return float(total)
""",
        "loses": ["test_loglik_values", "test_loglik_hidden"],
    },
    {
        "answer": "em",
        "why": "stops when the log-likelihood changes by less than tol (the rule the chapter "
        "warns against), not on Aitken's bound",
        "source": """def em(x, tol=1e-8, max_iter=1000):
    x = np.asarray(x, dtype=float)
    mean = np.nanmean(x, axis=0)
    cov = np.diag(np.nanmean((x - mean) ** 2, axis=0))
    thetas = [np.concatenate([mean, cov.ravel()])]
    logliks = [loglik(x, mean, cov)]
    for _ in range(max_iter):
        mean, cov = m_step(x, *e_step(x, mean, cov))
        thetas.append(np.concatenate([mean, cov.ravel()]))
        logliks.append(loglik(x, mean, cov))
        if abs(logliks[-1] - logliks[-2]) < tol:
            break
    return mean, cov, np.array(thetas), np.array(logliks)
""",
        "loses": ["test_em_stopping"],
    },
    {
        "answer": "em",
        "why": "one M-step on the mean-imputed data and no iterations: the mean-imputation "
        "answer the chapter shows is biased",
        "source": """def em(x, tol=1e-8, max_iter=1000):
    x = np.asarray(x, dtype=float)
    start_mean = np.nanmean(x, axis=0)
    start_cov = np.diag(np.nanmean((x - start_mean) ** 2, axis=0))
    filled = np.where(np.isnan(x), start_mean, x)
    mean = filled.mean(axis=0)
    cov = np.cov(filled.T, bias=True)
    thetas = [np.concatenate([start_mean, start_cov.ravel()]),
              np.concatenate([mean, cov.ravel()])]
    logliks = [loglik(x, start_mean, start_cov), loglik(x, mean, cov)]
    return mean, cov, np.array(thetas), np.array(logliks)
""",
        "loses": ["test_em_closed_form", "test_em_stopping", "test_em_hidden"],
    },
]
