"""Plausible wrong answers for 03_zip (the zero-inflated Poisson), each with the tests it fails.

The first ones come from the lecture notes' ZIP exercise, whose ψ is the probability of the
*Poisson* component (this course's π is the probability of a structural zero), and whose
convergence check takes the absolute value of a boolean.
"""

WRONG = [
    {
        "answer": "zip_loglik",
        "why": "ψ/π swapped: treats pi as the probability of the Poisson component (the notes' ψ)",
        "source": """def zip_loglik(y, lam, pi):
    y = np.asarray(y, dtype=float)
    ψ = pi  # read as the probability of the Poisson component
    log_poisson = y * np.log(lam) - lam - gammaln(y + 1)
    with np.errstate(divide="ignore"):
        log_zero = np.log((1 - ψ) + ψ * np.exp(-lam))
        log_positive = np.log(ψ) + log_poisson
    return float(np.sum(np.where(y == 0, log_zero, log_positive)))
""",
        "loses": ["test_zip_loglik_hand", "test_zip_loglik_poisson", "test_zip_loglik_hidden"],
    },
    {
        "answer": "zip_loglik",
        "why": "drops the -log y! term from the positive counts",
        "source": """def zip_loglik(y, lam, pi):
    y = np.asarray(y, dtype=float)
    log_zero = np.log(pi + (1 - pi) * np.exp(-lam))
    log_positive = np.log1p(-pi) + y * np.log(lam) - lam
    return float(np.sum(np.where(y == 0, log_zero, log_positive)))
""",
        "loses": ["test_zip_loglik_hand", "test_zip_loglik_poisson", "test_zip_loglik_hidden"],
    },
    {
        "answer": "e_step",
        "why": "the notes' convention: returns the posterior of the Poisson component "
        "(1 - gamma for zeros, 1 for positive counts)",
        "source": """def e_step(y, lam, pi):
    from scipy.stats import poisson

    y = np.asarray(y)
    ψ = 1 - pi
    a = (1 - ψ) * (y == 0)
    b = ψ * poisson.pmf(y, lam)
    return b / (a + b)
""",
        "loses": ["test_e_step_positive", "test_e_step_value", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "lam = mean of all counts, ignoring the responsibilities",
        "source": """def m_step(y, resp):
    y = np.asarray(y, dtype=float)
    return float(np.mean(y)), float(np.mean(resp))
""",
        "loses": ["test_m_step_hand", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "ψ/π mix-up: pi = 1 - mean(resp), the weight of the Poisson component",
        "source": """def m_step(y, resp):
    y = np.asarray(y, dtype=float)
    resp = np.asarray(resp, dtype=float)
    lam = np.sum((1 - resp) * y) / np.sum(1 - resp)
    return float(lam), float(1 - np.mean(resp))
""",
        "loses": ["test_m_step_hand", "test_m_step_hidden"],
    },
    {
        "answer": "em",
        "why": "the notes' stopping rule abs((lam_new - lam) < tol): the abs of a boolean, "
        "true as soon as lam decreases",
        "source": """def em(y, lam0, pi0, tol=1e-10, max_iter=10_000):
    lam, pi = float(lam0), float(pi0)
    history = [zip_loglik(y, lam, pi)]
    converged = False
    while not converged:
        lam_new, pi_new = m_step(y, e_step(y, lam, pi))
        converged = bool(np.abs((lam_new - lam) < tol))
        lam, pi = lam_new, pi_new
        history.append(zip_loglik(y, lam, pi))
    return lam, pi, np.array(history)
""",
        "loses": ["test_em_fixed_point", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "the notes' full stopping rule: |pi_new - pi| < tol and abs((lam_new - lam) < tol)",
        "source": """def em(y, lam0, pi0, tol=1e-10, max_iter=10_000):
    lam, pi = float(lam0), float(pi0)
    history = [zip_loglik(y, lam, pi)]
    for _ in range(max_iter):
        lam_new, pi_new = m_step(y, e_step(y, lam, pi))
        converged = (np.abs(pi_new - pi) < tol) & np.all(np.abs((lam_new - lam) < tol))
        lam, pi = lam_new, pi_new
        history.append(zip_loglik(y, lam, pi))
        if converged:
            break
    return lam, pi, np.array(history)
""",
        "loses": ["test_em_fixed_point", "test_em_hidden"],
    },
    {
        "answer": "em_table",
        "why": "gives every observation, not only the n_zero zeros, the responsibility gamma",
        "source": """def em_table(n, n_zero, total, tol=1e-10, max_iter=10_000):
    lam, pi = total / n, 0.5
    old = -np.inf
    for _ in range(max_iter):
        structural = n * pi / (pi + (1 - pi) * np.exp(-lam))
        lam, pi = total / (n - structural), structural / n
        new = (n_zero * np.log(pi + (1 - pi) * np.exp(-lam))
               + (n - n_zero) * (np.log1p(-pi) - lam) + total * np.log(lam))
        if abs(new - old) <= tol * max(abs(new), 1.0):
            break
        old = new
    return float(lam), float(pi)
""",
        "loses": ["test_em_table_moments", "test_em_table_hidden"],
    },
    {
        "answer": "em",
        "why": "stops on the relative change of the log-likelihood, the course's old rule "
        "|l_t - l_(t-1)| <= tol max(|l_t|, 1): on a slow case it stops short of the maximum",
        "source": """def em(y, lam0, pi0, tol=1e-8, max_iter=10_000):
    lam, pi = float(lam0), float(pi0)
    history = [zip_loglik(y, lam, pi)]
    for _ in range(max_iter):
        lam, pi = m_step(y, e_step(y, lam, pi))
        history.append(zip_loglik(y, lam, pi))
        if abs(history[-1] - history[-2]) <= tol * max(abs(history[-1]), 1.0):
            break
    return lam, pi, np.array(history)
""",
        "loses": ["test_em_stopping_rule", "test_em_hidden"],
    },
    {
        "answer": "em",
        "why": "Aitken's bound without the factor rho / (1 - rho): stops when the last relative "
        "step is below tol",
        "source": """def em(y, lam0, pi0, tol=1e-8, max_iter=10_000):
    lam, pi = float(lam0), float(pi0)
    history = [zip_loglik(y, lam, pi)]
    for _ in range(max_iter):
        lam_new, pi_new = m_step(y, e_step(y, lam, pi))
        step = max(abs(lam_new - lam) / max(1.0, abs(lam_new)), abs(pi_new - pi))
        lam, pi = lam_new, pi_new
        history.append(zip_loglik(y, lam, pi))
        if step <= tol:
            break
    return lam, pi, np.array(history)
""",
        "loses": ["test_em_stopping_rule"],
    },
    {
        "answer": "em_table",
        "why": "stops on the relative change of the log-likelihood (the course's old rule), "
        "which on the slow case (1000, 480, 800) stops far from the maximum",
        "source": """def em_table(n, n_zero, total, tol=1e-8, max_iter=10_000):
    def loglik(lam, pi):
        return (n_zero * np.log(pi + (1 - pi) * np.exp(-lam))
                + (n - n_zero) * (np.log1p(-pi) - lam) + total * np.log(lam))

    lam, pi = total / n, 0.5
    old = loglik(lam, pi)
    for _ in range(max_iter):
        structural = n_zero * pi / (pi + (1 - pi) * np.exp(-lam))
        lam, pi = total / (n - structural), structural / n
        new = loglik(lam, pi)
        if abs(new - old) <= tol * max(abs(new), 1.0):
            break
        old = new
    return float(lam), float(pi)
""",
        "loses": ["test_em_table_slow"],
    },
]
