"""Run the slowest test files first.

``make test`` spreads whole files over two pytest-xdist workers in collection order
(``--dist loadfile --no-loadscope-reorder``; by default xdist would put the files with the
most tests first, whatever they cost). Collected alphabetically, two long files (the
interrupted-grading runs, the JupyterLab check) came last and ran alone on one worker for
over a minute while the other sat idle; started first, the short files fill in around them.
"""

#: Test files by wall time in a full run on two cores (longest first; others follow).
SLOWEST_FIRST = (
    "tests/test_known_wrong.py",
    "tests/test_autograder.py",
    "tests/test_notebooks.py",
    "tests/test_judge.py",
    "tests/test_interrupts.py",
    "tests/test_zinb_sparse_genes.py",
    "tests/test_site.py",
    "tests/test_lab.py",
    "tests/test_validate.py",
    "tests/test_hand_grades.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    # A stable sort: each file's tests keep their order (and their module fixtures).
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
