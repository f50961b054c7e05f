"""Plausible wrong answers for 01_lower_bound, and the test cells that must catch them."""

WRONG = [
    {
        "answer": "jensen_gap",
        "why": "sign flipped: returns E[log X] - log E[X], which is <= 0",
        "source": """def jensen_gap(values, probs):
    values = np.asarray(values, dtype=float)
    probs = np.asarray(probs, dtype=float)
    return float(probs @ np.log(values) - np.log(probs @ values))
""",
        "loses": [
            "test_jensen_gap_worked",
            "test_jensen_gap_hidden",
            "test_jensen_gap_nonnegative",
        ],
    },
    {
        "answer": "jensen_gap",
        "why": "takes logs of the probabilities too: E[log X] replaced by sum p log(p x)",
        "source": """def jensen_gap(values, probs):
    values = np.asarray(values, dtype=float)
    probs = np.asarray(probs, dtype=float)
    return float(np.log(probs @ values) - probs @ np.log(probs * values))
""",
        "loses": ["test_jensen_gap_worked", "test_jensen_gap_constant", "test_jensen_gap_hidden"],
    },
    {
        "answer": "jensen_gap",
        "why": "ignores the probabilities (plain means: log(AM/GM) with equal weights)",
        "source": """def jensen_gap(values, probs):
    values = np.asarray(values, dtype=float)
    return float(np.log(values.mean()) - np.log(values).mean())
""",
        "loses": ["test_jensen_gap_worked", "test_jensen_gap_hidden"],
    },
    {
        "answer": "elbo",
        "why": "forgets the entropy term -sum q log q (returns the expected complete-data "
        "log-likelihood only)",
        "source": """def elbo(x, q, params):
    x = np.asarray(x, dtype=float)
    q = np.asarray(q, dtype=float)
    w, μ, σ = (np.asarray(params[key], dtype=float) for key in ("weights", "means", "sds"))
    return float(np.sum(q * (np.log(w) + norm.logpdf(x[:, None], μ, σ))))
""",
        "loses": [
            "test_elbo_tight_at_posterior",
            "test_elbo_hidden_tight",
            "test_elbo_hidden_formula",
        ],
    },
    {
        "answer": "elbo",
        "why": "passes variances where scipy's norm expects standard deviations (the notes' "
        "σ_j formula is the variance)",
        "source": """def elbo(x, q, params):
    x = np.asarray(x, dtype=float)
    q = np.asarray(q, dtype=float)
    w, μ, σ = (np.asarray(params[key], dtype=float) for key in ("weights", "means", "sds"))
    log_joint = np.log(w) + norm.logpdf(x[:, None], μ, σ**2)
    return float(np.sum(q * log_joint) - np.sum(xlogy(q, q)))
""",
        "loses": [
            "test_elbo_hard_labels",
            "test_elbo_tight_at_posterior",
            "test_elbo_hidden_tight",
            "test_elbo_hidden_formula",
        ],
    },
    {
        "answer": "posterior",
        "why": "swaps the weights between the components, as the lecture notes' displayed "
        "posterior does (ψ and 1 − ψ exchanged)",
        "source": """def posterior(x, params):
    x = np.asarray(x, dtype=float)
    w, μ, σ = (np.asarray(params[key], dtype=float) for key in ("weights", "means", "sds"))
    log_joint = np.log(w[::-1]) + norm.logpdf(x[:, None], μ, σ)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
""",
        "loses": [
            "test_posterior_worked",
            "test_posterior_hidden",
            "test_posterior_hidden_extreme",
        ],
    },
    {
        "answer": "posterior",
        "why": "naive ratio of densities (not in log space): 0/0 = nan far out in the tails",
        "source": """def posterior(x, params):
    x = np.asarray(x, dtype=float)
    w, μ, σ = (np.asarray(params[key], dtype=float) for key in ("weights", "means", "sds"))
    joint = w * norm.pdf(x[:, None], μ, σ)
    return joint / joint.sum(axis=1, keepdims=True)
""",
        "loses": ["test_posterior_far_out", "test_posterior_hidden_extreme"],
    },
    {
        "answer": "q_and_h",
        "why": "weights H's expectation with the posterior at θ instead of θ_t, so Q − H ≠ ℓ",
        "source": """def q_and_h(x, params, params_t):
    x = np.asarray(x, dtype=float)

    def log_joint(p):
        w, μ, σ = (np.asarray(p[key], dtype=float) for key in ("weights", "means", "sds"))
        return np.log(w) + norm.logpdf(x[:, None], μ, σ)

    a = log_joint(params)
    a_t = log_joint(params_t)
    r_t = np.exp(a_t - logsumexp(a_t, axis=1, keepdims=True))
    log_r = a - logsumexp(a, axis=1, keepdims=True)
    return float(np.sum(r_t * a)), float(np.sum(np.exp(log_r) * log_r))
""",
        "loses": [
            "test_q_and_h_worked",
            "test_q_and_h_decomposition",
            "test_q_and_h_hidden_values",
            "test_q_and_h_hidden_gibbs",
        ],
    },
    {
        "answer": "q_and_h",
        "why": "takes both expectations under the posterior at θ, ignoring θ_t (Q − H = ℓ "
        "still holds, but Q and H are not EM's)",
        "source": """def q_and_h(x, params, params_t):
    x = np.asarray(x, dtype=float)
    w, μ, σ = (np.asarray(params[key], dtype=float) for key in ("weights", "means", "sds"))
    a = np.log(w) + norm.logpdf(x[:, None], μ, σ)
    log_r = a - logsumexp(a, axis=1, keepdims=True)
    r = np.exp(log_r)
    return float(np.sum(r * a)), float(np.sum(r * log_r))
""",
        "loses": [
            "test_q_and_h_worked",
            "test_q_and_h_hidden_values",
            "test_q_and_h_hidden_gibbs",
        ],
    },
]
