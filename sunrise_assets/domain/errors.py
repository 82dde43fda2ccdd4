"""Errors of one night that the batch loop reports and moves past."""


class NightError(Exception):
    """A night that cannot be processed: names the night, the file and the problem."""

    def __init__(self, night: str, file: str, problem: str):
        self.night, self.file, self.problem = night, file, problem
        super().__init__(f"night {night}: {file}: {problem}")
