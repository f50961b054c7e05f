"""Plausible wrong answers for 05_convergence; each must lose the tests it names."""

WRONG = [
    {
        "answer": "run_em",
        "why": (
            "the lecture notes' stopping rule np.abs((new - old) < crit) on the parameters: "
            "the abs of a boolean, so any decrease of θ counts as converged"
        ),
        "source": """
def run_em(em_map, loglik, theta0, tol=1e-10, max_iter=1000):
    θ = np.atleast_1d(np.asarray(theta0, dtype=float))
    thetas = [θ]
    logliks = [float(loglik(θ))]
    converged = False
    while not converged and len(thetas) <= max_iter:
        θ_new = np.atleast_1d(np.asarray(em_map(θ), dtype=float))
        converged = np.all(np.abs((θ_new - θ) < tol))
        θ = θ_new
        thetas.append(θ)
        logliks.append(float(loglik(θ)))
    return np.array(thetas), np.array(logliks)
""",
        "loses": [
            "test_run_em_linkage",
            "test_run_em_hidden_linkage",
            "test_run_em_hidden_moth",
        ],
    },
    {
        "answer": "run_em",
        "why": "records only the iterates, leaving the starting point out of both histories",
        "source": """
def run_em(em_map, loglik, theta0, tol=1e-10, max_iter=1000):
    θ = np.atleast_1d(np.asarray(theta0, dtype=float))
    ℓ = float(loglik(θ))
    thetas, logliks = [], []
    for _ in range(max_iter):
        θ = np.atleast_1d(np.asarray(em_map(θ), dtype=float))
        ℓ_new = float(loglik(θ))
        thetas.append(θ)
        logliks.append(ℓ_new)
        done = abs(ℓ_new - ℓ) <= tol * max(abs(ℓ_new), 1.0)
        ℓ = ℓ_new
        if done:
            break
    return np.array(thetas), np.array(logliks)
""",
        "loses": ["test_run_em_histories", "test_run_em_cap"],
    },
    {
        "answer": "run_em",
        "why": "stops on the relative change of the log-likelihood, the course's old rule, "
        "instead of Aitken's bound on the distance to the fixed point",
        "source": """
def run_em(em_map, loglik, theta0, tol=1e-8, max_iter=1000):
    θ = np.atleast_1d(np.asarray(theta0, dtype=float))
    thetas = [θ]
    logliks = [float(loglik(θ))]
    for _ in range(max_iter):
        θ = np.atleast_1d(np.asarray(em_map(θ), dtype=float))
        thetas.append(θ)
        logliks.append(float(loglik(θ)))
        if abs(logliks[-1] - logliks[-2]) <= tol * max(abs(logliks[-1]), 1.0):
            break
    return np.array(thetas), np.array(logliks)
""",
        "loses": ["test_run_em_histories"],
    },
    {
        "answer": "run_em",
        "why": "forgets the factor rho / (1 - rho): stops when the last relative step is at most "
        "tol, which is not the rule (too late when rho < 1/2, far too early when rho is near 1)",
        "source": """
def run_em(em_map, loglik, theta0, tol=1e-8, max_iter=1000):
    θ = np.atleast_1d(np.asarray(theta0, dtype=float))
    thetas = [θ]
    logliks = [float(loglik(θ))]
    for _ in range(max_iter):
        θ_new = np.atleast_1d(np.asarray(em_map(θ), dtype=float))
        small = np.max(np.abs(θ_new - θ) / np.maximum(1.0, np.abs(θ_new))) <= tol
        θ = θ_new
        thetas.append(θ)
        logliks.append(float(loglik(θ)))
        if small:
            break
    return np.array(thetas), np.array(logliks)
""",
        "loses": ["test_run_em_histories"],
    },
    {
        "answer": "error_ratios",
        "why": "ratios of the parameter norms, forgetting to subtract θ̂",
        "source": """
def error_ratios(theta_history, theta_hat):
    norms = np.linalg.norm(np.asarray(theta_history, dtype=float), axis=1)
    return norms[1:] / norms[:-1]
""",
        "loses": ["test_error_ratios_geometric", "test_error_ratios_hidden"],
    },
    {
        "answer": "error_ratios",
        "why": "the inverse ratio ||θ_t − θ̂|| / ||θ_{t+1} − θ̂||",
        "source": """
def error_ratios(theta_history, theta_hat):
    errors = np.linalg.norm(np.asarray(theta_history, dtype=float) - theta_hat, axis=1)
    return errors[:-1] / errors[1:]
""",
        "loses": ["test_error_ratios_geometric", "test_error_ratios_hidden"],
    },
    {
        "answer": "estimate_rate",
        "why": (
            "the mean of all ratios after the burn-in, including the tail where the errors "
            "are rounding noise (non-finite ratios dropped)"
        ),
        "source": """
def estimate_rate(theta_history, theta_hat, burn_in=2, floor=1e-10):
    ratios = error_ratios(theta_history, theta_hat)[burn_in:]
    return float(np.mean(ratios[np.isfinite(ratios)]))
""",
        "loses": ["test_estimate_rate_synthetic", "test_estimate_rate_hidden"],
    },
    {
        "answer": "estimate_rate",
        "why": "returns log ρ (the slope of the log error) instead of ρ",
        "source": """
def estimate_rate(theta_history, theta_hat, burn_in=2, floor=1e-10):
    path = np.asarray(theta_history, dtype=float)
    errors = np.linalg.norm(path - theta_hat, axis=1)
    ratios = errors[1:] / errors[:-1]
    keep = (np.arange(ratios.size) >= burn_in) & (errors[1:] > floor)
    return float(np.log(np.median(ratios[keep])))
""",
        "loses": ["test_estimate_rate_synthetic", "test_estimate_rate_hidden"],
    },
    {
        "answer": "squarem_step",
        "why": "inverted step length α = −||v|| / ||r||",
        "source": """
def squarem_step(theta, em_map):
    θ0 = np.asarray(theta, dtype=float)
    θ1 = np.asarray(em_map(θ0), dtype=float)
    θ2 = np.asarray(em_map(θ1), dtype=float)
    r = θ1 - θ0
    v = θ2 - 2 * θ1 + θ0
    if np.linalg.norm(r) == 0:
        return θ2
    α = -np.linalg.norm(v) / np.linalg.norm(r)
    return θ0 - 2 * α * r + α**2 * v
""",
        "loses": ["test_squarem_step_linear", "test_squarem_step_hidden"],
    },
    {
        "answer": "squarem_step",
        "why": "mixes the sign conventions: α = −||r|| / ||v|| with θ + 2αr + α²v",
        "source": """
def squarem_step(theta, em_map):
    θ0 = np.asarray(theta, dtype=float)
    θ1 = np.asarray(em_map(θ0), dtype=float)
    θ2 = np.asarray(em_map(θ1), dtype=float)
    r = θ1 - θ0
    v = θ2 - 2 * θ1 + θ0
    if np.linalg.norm(v) == 0:
        return θ2
    α = -np.linalg.norm(r) / np.linalg.norm(v)
    return θ0 + 2 * α * r + α**2 * v
""",
        "loses": ["test_squarem_step_linear", "test_squarem_step_hidden"],
    },
]
