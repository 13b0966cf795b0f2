"""The HJ 212-2017 codes dust and noise monitors send, and what their data flags mean. Data.

Pollutant and parameter codes (污染因子编码, the standard's appendix B) map to the metric names the city's sensor
profiles speak (intake.yaml); a code not listed here travels under its own name, so a reading with it is refused
`unknown_metric` unless the device's model maps it (devices.yaml `aliases`).
"""

from __future__ import annotations

# Data commands (命令编码) the edge turns into readings, with the field that carries the value.
DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "2011": ("Rtd", "实时数据 real-time data"),
    "2051": ("Avg", "分钟数据 minute data"),
    "2061": ("Avg", "小时数据 hourly data"),
    "2031": ("Avg", "日数据 daily data"),
}

METRICS: dict[str, str] = {
    # 颗粒物 particulates
    "a34001": "tsp",  # 总悬浮颗粒物 TSP
    "a34002": "pm10",  # 可吸入颗粒物 PM10
    "a34004": "pm25",  # 细颗粒物 PM2.5
    # 气象参数 weather
    "a01001": "temperature",  # 温度 °C
    "a01002": "humidity",  # 湿度 %
    "a01006": "pressure",  # 气压 kPa
    "a01007": "wind_speed",  # 风速 m/s
    "a01008": "wind_direction",  # 风向 °
    # 噪声 noise, dB(A)
    "LA": "db",  # A 声级 A-weighted level
    "Leq": "laeq",  # 等效连续 A 声级 equivalent continuous level
    "LMx": "lmax",  # 最大声级
    "LMn": "lmin",  # 最小声级
    "L10": "l10",
    "L50": "l50",
    "L90": "l90",
}

# Data flags (数据标记) and the device status each one is reported as. `N` is normal and adds nothing; values
# flagged F, M, S or C are not measurements of the air (a stopped, serviced, hand-set or calibrating instrument)
# and are left out of the reading; D, B and T are device faults a city lists in `fault_statuses`.
FLAGS: dict[str, str] = {
    "F": "stopped",  # 在线监控（监测）仪器仪表停运
    "M": "maintenance",  # 维护期间产生的数据
    "S": "manual",  # 手工输入的设定值
    "D": "fault",  # 仪器仪表故障
    "C": "calibrating",  # 处于校准状态
    "T": "over_range",  # 采样数值超过测量上限
    "B": "comm_error",  # 与数采仪通讯异常
}
NOT_MEASURED = frozenset({"F", "M", "S", "C"})
# The status a reading reports when its values carry several flags: the most serious first.
SEVERITY = ("D", "B", "T", "F", "C", "M", "S")
