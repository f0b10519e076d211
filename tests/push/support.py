"""Helpers of the push tests."""


def by_case(run) -> dict[str, dict]:
    return {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}
