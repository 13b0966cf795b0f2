"""A small department case system (部门业务系统): receives the cases dispatched to its unit, signs for them,
reports them fixed, and follows them until they are verified and closed — all through `xiuhua.client`."""

from examples.department_case_system.service import DepartmentCaseSystem, LocalCase

__all__ = ["DepartmentCaseSystem", "LocalCase"]
