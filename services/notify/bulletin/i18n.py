"""The bulletin's words in Chinese (the edition of record) and English. Pure data."""

from __future__ import annotations

LANGUAGES = ("zh", "en")

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "城管执法精细化管理工作周报",
        "subtitle": "第 {week} 周（{start} 至 {end}）",
        "generated": "生成时间",
        "other_edition": "English edition",
        "headline": "一、本周概况",
        "figure": "指标", "this_week": "本周", "previous_week": "上周", "change": "环比",
        "opened": "立案数", "closed": "结案数", "overdue": "超期案件", "escalated": "升级督办",
        "rates": "二、处置质量",
        "rate": "指标", "target": "目标", "met": "达标", "not_met": "未达标", "no_target": "—",
        "on_time_rate": "限时整改率", "closure_rate": "结案率", "rework_rate": "返工率",
        "satisfaction_rate": "群众满意率",
        "rates_note": "限时整改率 = 按期处置数 / 处置数；结案率 = 本周立案中已结案数 / (立案数 − 作废数)；"
                      "返工率 = 核查不通过数 / 核查数；群众满意率 = (满意 + 基本满意) / 回访数。目标依据实施方案："
                      "限时整改率 ≥ 95%，群众满意率 ≥ 85%。",
        "sources": "三、案件来源", "source": "来源", "count": "件数",
        "categories": "四、案件类别（前 10 位）", "category": "类别", "categories_more": "本周共涉及 {n} 个类别。",
        "hotspots": "五、热点区域", "grids": "单元网格（前 10 位）", "communities": "社区（前 10 位）",
        "grid": "网格", "community": "社区",
        "ranking": "六、责任单位排名", "rank": "名次", "unit": "单位", "dispatched": "派遣",
        "resolved": "处置", "resolved_on_time": "按期处置", "rework": "返工", "unit_on_time": "按期处置率",
        "red_list": "红榜", "black_list": "黑榜", "tied": "并列",
        "tie_note": "说明：得分相同者名次并列；榜单边界处并列者一并列入，相同得分不分列红、黑榜。",
        "unassessed": "本期无应结案件，不参与排名",
        "ranking_note": "排名按本周按期处置率，其次超期件数少、返工少、处置多者在前；红榜、黑榜各取前、后 {n} 名。",
        "ranking_gap": "说明：评分服务未发布本周综合排名（score.v1.ranking_published），"
                       "本表由通报服务根据案件事件计算。",
        "role": "单位类别", "score": "综合得分", "board": "榜单", "red": "红榜", "black": "黑榜", "bottom": "末位",
        "scoring_note": "综合得分及红黑榜由评分服务按考核办法计算。",
        "cases": "七、超期与升级督办案件", "overdue_cases": "超期案件", "escalated_cases": "升级督办案件",
        "case": "案件", "place": "位置", "due_at": "处置时限", "level": "督办级别",
        "levels": "1 单位负责人 / 2 街道领导 / 3 挂牌督办",
        "merchants": "八、沿街商户门前责任", "merchant": "商户", "grade": "等级", "previous_grade": "原等级",
        "change_kind": "变化", "escalated_merchant": "屡查屡犯，移交执法", "violations": "违规次数",
        "no_merchants": "本周无商户等级变化。",
        "none": "无。", "chart_categories": "案件类别（前 10 位）", "chart_sources": "案件来源",
        "chart_rates": "处置质量与目标", "chart_grids": "热点网格（前 10 位）", "legend_target": "目标",
        "listed_more": "另有 {n} 件未列出。",
    },
    "en": {
        "title": "Weekly Bulletin of Refined City Management and Enforcement",
        "subtitle": "Week {week} ({start} to {end})",
        "generated": "Generated",
        "other_edition": "中文版",
        "headline": "1. The week at a glance",
        "figure": "Figure", "this_week": "This week", "previous_week": "Previous week", "change": "Change",
        "opened": "Cases opened", "closed": "Cases closed", "overdue": "Overdue cases", "escalated": "Escalations",
        "rates": "2. Quality of handling",
        "rate": "Rate", "target": "Target", "met": "met", "not_met": "missed", "no_target": "—",
        "on_time_rate": "On-time rate", "closure_rate": "Closure rate", "rework_rate": "Rework rate",
        "satisfaction_rate": "Satisfaction",
        "rates_note": "On-time = resolved on time / resolved; closure = cases opened this week and closed by now "
                      "/ (opened − cancelled); rework = failed verifications / verifications; satisfaction = "
                      "(satisfied + basic) / call-backs. Targets from the implementation plan: on-time ≥ 95 %, "
                      "satisfaction ≥ 85 %.",
        "sources": "3. Where cases came from", "source": "Source", "count": "Cases",
        "categories": "4. Case categories (top 10)", "category": "Category",
        "categories_more": "{n} categories in all this week.",
        "hotspots": "5. Hot spots", "grids": "Grid cells (top 10)", "communities": "Communities (top 10)",
        "grid": "Grid cell", "community": "Community",
        "ranking": "6. Unit ranking", "rank": "Rank", "unit": "Unit", "dispatched": "Dispatched",
        "resolved": "Resolved", "resolved_on_time": "On time", "rework": "Rework", "unit_on_time": "On-time rate",
        "red_list": "Red list", "black_list": "Black list", "tied": "tie",
        "tie_note": "Note: equal scores share a rank; a tie at a list's boundary is listed whole, and equal scores "
                    "are never split between the red and black lists.",
        "unassessed": "No cases fell due this period, not ranked",
        "ranking_note": "Ranked by the week's on-time rate, then fewer overdue, less rework, more resolved; the red "
                        "and black lists are the top and bottom {n}.",
        "ranking_gap": "Note: scoring published no ranking for this week (score.v1.ranking_published); notify "
                       "computed this table from case events.",
        "role": "Unit type", "score": "Score", "board": "List", "red": "red", "black": "black", "bottom": "bottom",
        "scoring_note": "Scores and the red and black lists are computed by scoring under the assessment rules.",
        "cases": "7. Overdue and escalated cases", "overdue_cases": "Overdue cases",
        "escalated_cases": "Escalated cases", "case": "Case", "place": "Place", "due_at": "Deadline",
        "level": "Level", "levels": "1 unit head / 2 street leadership / 3 supervised listing (挂牌督办)",
        "merchants": "8. Street-front merchants (门前责任)", "merchant": "Merchant", "grade": "Grade",
        "previous_grade": "Was", "change_kind": "Change", "escalated_merchant": "repeated failure, sent to enforcement",
        "violations": "Violations", "no_merchants": "No merchant grade changes this week.",
        "none": "None.", "chart_categories": "Case categories (top 10)", "chart_sources": "Where cases came from",
        "chart_rates": "Quality of handling against targets", "chart_grids": "Hot grid cells (top 10)",
        "legend_target": "target", "listed_more": "{n} more not listed.",
    },
}

ROLES_ZH: dict[str, str] = {
    "enforcement": "综合执法队", "traffic_police": "交警中队", "market_supervision": "市场监督管理所",
    "emergency": "应急管理办公室", "construction": "城市建设管理中心", "property": "物业管理办公室",
    "community": "社区", "street_office": "街道公共管理办", "sanitation": "环卫作业单位", "landscaping": "园林绿化",
    "police": "派出所", "ecology": "生态环境", "water": "水务", "utilities": "管线产权单位",
    "command_centre": "指挥中心", "hotline": "12345 热线",
}
