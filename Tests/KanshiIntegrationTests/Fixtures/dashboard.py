"""Drives Kanshi's dashboard in a real browser (Debian's Chromium through Playwright).

Usage: dashboard.py URL USER PASSWORD SENSOR/RECORDING OUTDIR WAIT_SECONDS

Logs in, opens the recording, checks that the timeline and the LBA x time heat-map rendered
(their screenshots, decoded here, must hold the charts' colours), drills down from the heat-map
into the block records, then stays on the page up to WAIT_SECONDS for a new alert: the moment
the server's API first lists it and the moment the open page shows it are both recorded. When
OUTDIR/shipped appears, opens lab/sandbox1: process tree, paging, a filter, and the alert's
evidence followed to its event.
Writes OUTDIR/result.json; screenshots in OUTDIR.
"""
import json
import os
import struct
import sys
import time
import zlib

from playwright.sync_api import sync_playwright


def png_pixels(data):
    """(width, height, rows of RGBA tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def colour_counts(png):
    """Pixels that are clearly red (writes) and clearly blue (reads) in a screenshot."""
    _, _, rows = png_pixels(png)
    red = blue = 0
    for row in rows:
        for r, g, b in row:
            if r > 150 and g < 120 and b < 120: red += 1
            elif b > 150 and r < 120 and g < 160: blue += 1
    return red, blue


def main():
    url, user, password, recording, out, wait = sys.argv[1:7]
    sensor, name = recording.split("/", 1)
    result = {"errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: result["errors"].append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#login-form", state="visible")
        page.fill("#login-user", user)
        page.fill("#login-password", "wrong password")
        page.click("#login-submit")
        page.wait_for_function("document.querySelector('#login-error').textContent.length > 0")
        result["wrongPassword"] = page.inner_text("#login-error")
        page.fill("#login-password", password)
        page.click("#login-submit")
        page.wait_for_selector(f'tr[data-recording="{recording}"]')
        result["recordings"] = page.eval_on_selector_all("#recordings tbody tr", "rows => rows.map(r => r.dataset.recording)")
        page.click(f'tr[data-recording="{recording}"]')
        page.wait_for_selector("#blocks tbody tr")
        page.wait_for_timeout(300)
        timeline = page.locator("#timeline").screenshot(path=out + "/timeline.png")
        heatmap = page.locator("#heatmap").screenshot(path=out + "/heatmap.png")
        result["timelineColours"] = colour_counts(timeline)
        result["heatmapColours"] = colour_counts(heatmap)
        page.screenshot(path=out + "/page.png", full_page=True)
        result["blockRows"] = page.locator("#blocks tbody tr").count()
        result["gadf"] = page.eval_on_selector_all("#gadf figure", "fs => fs.map(f => f.dataset.series)")
        # Drill down: a click on the heat-map's first write cell filters the block records to it.
        box = page.locator("#heatmap").bounding_box()
        point = page.evaluate("""() => {
            const c = Chart.getChart(document.querySelector('#heatmap'));
            const el = c.getDatasetMeta(0).data[0];
            return el ? {x: el.x, y: el.y} : null; }""")
        if point:
            page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
            page.wait_for_function("document.querySelector('#blocks-range').textContent.includes('LBA')")
            page.wait_for_timeout(500)
            result["drillRange"] = page.inner_text("#blocks-range")
            result["drillOps"] = page.eval_on_selector_all("#blocks tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)")
        # A click on a GADF image shows the records between its two intervals.
        if page.locator('#gadf figure[data-series="write-bytes"] img').count():
            page.click('#gadf figure[data-series="write-bytes"] img', position={"x": 5, "y": 150})
            page.wait_for_timeout(500)
            result["gadfDrill"] = page.inner_text("#blocks-range")
            result["gadfDrillRows"] = page.locator("#blocks tbody tr").count()
        # A filter on the block records: reads only.
        page.click('#blocks-filter .clear')
        page.select_option('#blocks-filter select[name="op"]', "read")
        page.click('#blocks-filter button[type="submit"]')
        page.wait_for_timeout(500)
        result["filteredOps"] = sorted(set(page.eval_on_selector_all("#blocks tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)")))

        # Live: stay on the page and note when a new alert shows up, in the API and on the page.
        known = page.evaluate("fetch('/api/alerts?limit=1000').then(r => r.json()).then(l => l.map(a => a.id))")
        result["alertsBefore"] = len(known)
        open(out + "/ready", "w").close()
        deadline = time.time() + float(wait)
        api_seen = page_seen = None
        while time.time() < deadline and page_seen is None:
            if api_seen is None:
                ids = page.evaluate("fetch('/api/alerts?limit=1000').then(r => r.json()).then(l => l.map(a => [a.id, a.rule]))")
                new = [i for i in ids if i[0] not in known]
                if new:
                    api_seen = time.time()
                    result["alertRule"] = new[0][1]
            if page.locator("#toast").is_visible() and "ALERT" in page.inner_text("#toast"):
                page_seen = time.time()
                result["toast"] = page.inner_text("#toast")
                page.screenshot(path=out + "/alert.png")
            page.wait_for_timeout(100)
        result["apiSeen"] = api_seen
        result["pageSeen"] = page_seen

        # Once the sandbox has shipped everything: its recording, with system calls.
        deadline = time.time() + float(wait)
        while time.time() < deadline and not os.path.exists(out + "/shipped"):
            time.sleep(0.2)
        page.click("#home")
        page.wait_for_selector('tr[data-recording="lab/sandbox1"]')
        page.click('tr[data-recording="lab/sandbox1"]')
        page.wait_for_selector("#events tbody tr")
        page.wait_for_timeout(300)
        result["tree"] = page.inner_text("#processes")
        result["eventsFirst"] = page.eval_on_selector_all("#events tbody tr", "rows => rows.map(r => Number(r.dataset.seq))")
        if not page.locator('.pager[data-for="events"] .next').is_disabled():
            page.click('.pager[data-for="events"] .next')
            page.wait_for_timeout(500)
            result["eventsSecond"] = page.eval_on_selector_all("#events tbody tr", "rows => rows.map(r => Number(r.dataset.seq))")
        page.fill('#events-filter input[name="ev"]', "utime")
        page.click('#events-filter button[type="submit"]')
        page.wait_for_timeout(500)
        result["filteredKinds"] = sorted(set(page.eval_on_selector_all("#events tbody tr td:nth-child(3)", "tds => tds.map(t => t.textContent)")))
        # The alerts table's filter.
        page.fill("#alerts-filter", "no such alert")
        result["alertsShownNoMatch"] = page.locator("#alerts tbody tr:not([hidden])").count()
        page.fill("#alerts-filter", "timestamp")
        result["alertsShownMatch"] = page.locator("#alerts tbody tr:not([hidden])").count()
        # Drill-down from the alert's evidence to the event behind it.
        evidence = page.locator("#alerts a.evidence").last
        seq = int(evidence.get_attribute("data-seq"))
        evidence.click()
        page.wait_for_timeout(500)
        result["evidenceSeq"] = seq
        result["evidenceRow"] = page.eval_on_selector_all("#events tbody tr.hit", "rows => rows.map(r => r.innerText)")
        page.screenshot(path=out + "/sandbox.png", full_page=True)
        browser.close()
    with open(out + "/result.json", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
