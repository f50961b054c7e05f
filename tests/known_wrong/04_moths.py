"""Known-wrong answers for 04_moths (peppered-moth allele frequencies)."""

WRONG = [
    {
        "answer": "e_step",
        "why": "takes the CT share from the insularia count x_I instead of the carbonaria count",
        "source": """
def e_step(counts, p):
    x_C, x_I, x_T = np.asarray(counts, dtype=float)
    p_C, p_I, p_T = np.asarray(p, dtype=float)
    π_C = p_C**2 + 2 * p_C * p_I + 2 * p_C * p_T
    π_I = p_I**2 + 2 * p_I * p_T
    return np.array([
        x_C * p_C**2 / π_C,
        x_C * 2 * p_C * p_I / π_C,
        x_I * 2 * p_C * p_T / π_C,
        x_I * p_I**2 / π_I,
        x_I * 2 * p_I * p_T / π_I,
        x_T,
    ])
""",
        "loses": ["test_e_step_phenotype_sums", "test_e_step_hidden"],
    },
    {
        "answer": "e_step",
        "why": "leaves the CT term out of the carbonaria probability in the denominators",
        "source": """
def e_step(counts, p):
    x_C, x_I, x_T = np.asarray(counts, dtype=float)
    p_C, p_I, p_T = np.asarray(p, dtype=float)
    π_C = p_C**2 + 2 * p_C * p_I
    π_I = p_I**2 + 2 * p_I * p_T
    return np.array([
        x_C * p_C**2 / π_C,
        x_C * 2 * p_C * p_I / π_C,
        x_C * 2 * p_C * p_T / π_C,
        x_I * p_I**2 / π_I,
        x_I * 2 * p_I * p_T / π_I,
        x_T,
    ])
""",
        "loses": ["test_e_step_phenotype_sums", "test_e_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "divides allele counts by the number of moths N instead of the 2N alleles "
        "(the frequencies then sum to 2)",
        "source": """
def m_step(genotypes):
    y_CC, y_CI, y_CT, y_II, y_IT, y_TT = np.asarray(genotypes, dtype=float)
    N = y_CC + y_CI + y_CT + y_II + y_IT + y_TT
    return np.array([2 * y_CC + y_CI + y_CT, 2 * y_II + y_CI + y_IT, 2 * y_TT + y_CT + y_IT]) / N
""",
        "loses": ["test_m_step_sums_to_one", "test_m_step_hand_case", "test_m_step_hidden"],
    },
    {
        "answer": "m_step",
        "why": "sets p_T = 1 - p_I + p_C, the lecture notes' sign error",
        "source": """
def m_step(genotypes):
    y_CC, y_CI, y_CT, y_II, y_IT, y_TT = np.asarray(genotypes, dtype=float)
    two_N = 2 * (y_CC + y_CI + y_CT + y_II + y_IT + y_TT)
    p_C = (2 * y_CC + y_CI + y_CT) / two_N
    p_I = (2 * y_II + y_CI + y_IT) / two_N
    return np.array([p_C, p_I, 1 - p_I + p_C])
""",
        "loses": ["test_m_step_sums_to_one", "test_m_step_hand_case", "test_m_step_hidden"],
    },
    {
        "answer": "phenotype_loglik",
        "why": "uses p_C**2 alone as the carbonaria probability (forgets the CI and CT "
        "heterozygotes)",
        "source": """
from scipy.special import gammaln, xlogy


def phenotype_loglik(counts, p):
    x = np.asarray(counts, dtype=float)
    p_C, p_I, p_T = np.asarray(p, dtype=float)
    π = np.array([p_C**2, p_I**2 + 2 * p_I * p_T, p_T**2])
    return float(gammaln(x.sum() + 1) - gammaln(x + 1).sum() + xlogy(x, π).sum())
""",
        "loses": [
            "test_phenotype_loglik_hand_case",
            "test_phenotype_loglik_sums_to_one",
            "test_phenotype_loglik_hidden",
        ],
    },
    {
        "answer": "phenotype_loglik",
        "why": "drops the multinomial coefficient log N!/(x_C! x_I! x_T!)",
        "source": """
from scipy.special import xlogy


def phenotype_loglik(counts, p):
    x = np.asarray(counts, dtype=float)
    p_C, p_I, p_T = np.asarray(p, dtype=float)
    π = np.array([p_C**2 + 2 * p_C * p_I + 2 * p_C * p_T, p_I**2 + 2 * p_I * p_T, p_T**2])
    return float(xlogy(x, π).sum())
""",
        "loses": [
            "test_phenotype_loglik_hand_case",
            "test_phenotype_loglik_sums_to_one",
            "test_phenotype_loglik_hidden",
        ],
    },
    {
        "answer": "em",
        "why": "the lecture notes' stopping rule np.abs((new - old) < tol) on p_C and p_I: "
        "the absolute value of a boolean, so the first step that lowers both stops EM",
        "source": """
def em(counts, p0=(1 / 3, 1 / 3, 1 / 3), tol=1e-10, max_iter=1000):
    p = np.asarray(p0, dtype=float)
    history = [phenotype_loglik(counts, p)]
    for _ in range(max_iter):
        p_new = m_step(e_step(counts, p))
        history.append(phenotype_loglik(counts, p_new))
        converged = np.abs((p_new[0] - p[0]) < tol) & np.abs((p_new[1] - p[1]) < tol)
        p = p_new
        if converged:
            break
    return p, np.array(history)
""",
        "loses": ["test_em_givens_hoeting", "test_em_hidden_mle"],
    },
    {
        "answer": "em",
        "why": "records a log-likelihood without the multinomial coefficient",
        "source": """
def em(counts, p0=(1 / 3, 1 / 3, 1 / 3), tol=1e-10, max_iter=1000):
    x = np.asarray(counts, dtype=float)

    def kernel(p):
        p_C, p_I, p_T = p
        π = np.array([p_C**2 + 2 * p_C * p_I + 2 * p_C * p_T, p_I**2 + 2 * p_I * p_T, p_T**2])
        return float(np.sum(x * np.log(π)))

    p = np.asarray(p0, dtype=float)
    history = [kernel(p)]
    for _ in range(max_iter):
        p = m_step(e_step(counts, p))
        history.append(kernel(p))
        if abs(history[-1] - history[-2]) / max(abs(history[-1]), 1.0) <= tol:
            break
    return p, np.array(history)
""",
        "loses": ["test_em_history", "test_em_hidden_history"],
    },
    {
        "answer": "em",
        "why": "stops on the relative change of the log-likelihood, the course's old rule, "
        "instead of Aitken's bound on the distance to the maximum",
        "source": """
def em(counts, p0=(1 / 3, 1 / 3, 1 / 3), tol=1e-8, max_iter=1000):
    p = np.asarray(p0, dtype=float)
    history = [phenotype_loglik(counts, p)]
    for _ in range(max_iter):
        p = m_step(e_step(counts, p))
        history.append(phenotype_loglik(counts, p))
        if abs(history[-1] - history[-2]) / max(abs(history[-1]), 1.0) <= tol:
            break
    return p, np.array(history)
""",
        "loses": ["test_em_stopping_rule"],
    },
    {
        "answer": "em",
        "why": "passes the log-likelihood history to converged instead of the iterates p_t: "
        "the bound then measures l, which converges twice as fast as p",
        "source": """
def em(counts, p0=(1 / 3, 1 / 3, 1 / 3), tol=1e-8, max_iter=1000):
    p = np.asarray(p0, dtype=float)
    history = [phenotype_loglik(counts, p)]
    for _ in range(max_iter):
        p = m_step(e_step(counts, p))
        history.append(phenotype_loglik(counts, p))
        if converged(history, tol):
            break
    return p, np.array(history)
""",
        "loses": ["test_em_stopping_rule"],
    },
]
