"""A province of departments generated from the demo department (services/roster/demo/department.json).

Each department gets new ids (tenant, people) and its own names and e-mail domain, keeping
the demo's divisions and roles.
"""

from __future__ import annotations

import json
from pathlib import Path

DEMO_FILE = Path(__file__).parents[1] / "services/roster/demo/department.json"

# Provincial departments (Sở) whose names the generated ones take in turn.
DEPARTMENT_NAMES = (
    "Thông tin và Truyền thông", "Nội vụ", "Tư pháp", "Kế hoạch và Đầu tư", "Tài chính",
    "Công Thương", "Nông nghiệp và Phát triển nông thôn", "Giao thông vận tải", "Xây dựng",
    "Tài nguyên và Môi trường", "Lao động - Thương binh và Xã hội", "Văn hóa, Thể thao và Du lịch",
    "Khoa học và Công nghệ", "Giáo dục và Đào tạo", "Y tế", "Ngoại vụ", "Du lịch",
)
SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ")
MIDDLE = ("Văn", "Thị", "Minh", "Hữu", "Thu", "Quang", "Ngọc", "Đức", "Thanh", "Hồng")
GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hùng", "Lan", "Long", "Mai",
         "Nam", "Nga", "Phong", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Việt", "Yến")


def demo() -> dict:
    return json.loads(DEMO_FILE.read_text())


def _name(k: int, i: int) -> str:
    return f"{SURNAMES[(k + i) % len(SURNAMES)]} {MIDDLE[(k * 7 + i) % len(MIDDLE)]} {GIVEN[(k * 3 + i * 5) % len(GIVEN)]}"


def department(k: int, prefix: str = "bench") -> dict:
    """Department number `k` (1-based): the demo's divisions and roles, new ids and names."""
    spec = demo()
    tenant = f"{prefix}-so{k:03d}"
    domain = f"so{k:03d}.bench.gov.vn"
    people = [{**p, "id": f"cb{k:03d}-{i:04d}", "full_name": _name(k, i), "email": f"cb{i:04d}@{domain}"}
              for i, p in enumerate(spec["people"], start=1)]
    name = DEPARTMENT_NAMES[(k - 1) % len(DEPARTMENT_NAMES)]
    return {
        "tenant": tenant,
        "name": f"Sở {name} (mô phỏng {k:03d})",
        "symbol": f"S{k:03d}",
        "divisions": spec["divisions"],
        "people": people,
    }


def province(count: int) -> list[dict]:
    return [department(k) for k in range(1, count + 1)]


def with_role(spec: dict, role: str, division_id: str | None = None) -> list[dict]:
    return [p for p in spec["people"] if role in p["roles"] and division_id in (None, p["division_id"])]


def members(spec: dict, division_id: str) -> list[dict]:
    return sorted((p for p in spec["people"] if p["division_id"] == division_id), key=lambda p: p["id"])
