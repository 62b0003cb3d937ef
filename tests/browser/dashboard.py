#!/usr/bin/env python3
"""Drives the admin dashboard in headless Chromium (Selenium), step by step with tests/dashboard.rs.

Usage: dashboard.py ADMIN_URL ARTIFACT_DIR CLUSTER

The Rust test changes the world (DNS records, pods) and this script checks what the page shows,
without reloading it: the page must follow by itself. Protocol on stdout/stdin, one line each:

  script: "STEP 3"      three backends of CLUSTER show healthy (screenshot 1-three-pods.png)
  test:   "scaled"      the test added two pods to DNS
  script: "STEP 5"      five show healthy (2-five-pods.png)
  test:   "killed ADDR" the test killed the pod at ADDR
  script: "STEP unhealthy"  ADDR shows unhealthy (3-pod-killed.png, 4-phone.png)
  script: "DONE"

Any failure: "FAIL <why>" and exit 1. Selenium or the browser missing: "SKIP <why>", exit 77.
"""

import sys
import time

WAIT = 20  # seconds for each step: DNS refresh + probes take about one second in the test


def say(line):
    print(line, flush=True)


def fail(why):
    say("FAIL " + why)
    sys.exit(1)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError as e:
    say(f"SKIP selenium is not installed ({e}): scripts/setup.sh installs it (pinned in scripts/python-peers.txt)")
    sys.exit(77)


def browser():
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        say("SKIP no chromium/chromedriver: apt-get install chromium chromium-driver")
        sys.exit(77)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    # The chromedriver found here, never Selenium Manager's download (no network in tests).
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def rows(driver, cluster):
    """(address, health) of each backend row of CLUSTER, as the page shows it now."""
    return driver.execute_script(
        """
        const s = document.querySelector(`section[data-cluster="${arguments[0]}"]`);
        if (!s) return [];
        return [...s.querySelectorAll("tr[data-backend]")]
            .map(r => [r.dataset.backend, r.dataset.health]);
        """,
        cluster,
    )


def wait_for(driver, what, check):
    deadline = time.time() + WAIT
    seen = None
    while time.time() < deadline:
        seen = check()
        if seen is True:
            return
        time.sleep(0.2)
    fail(f"{what}: not seen within {WAIT}s; last seen {seen}")


def main():
    admin, artifacts, cluster = sys.argv[1], sys.argv[2], sys.argv[3]
    driver = browser()
    try:
        driver.get(admin + "/")
        if "headway" not in driver.title:
            fail(f"title {driver.title!r}")

        def healthy(n):
            def check():
                r = rows(driver, cluster)
                return True if sum(1 for _, h in r if h == "healthy") == n else r
            return check

        wait_for(driver, "three healthy backends", healthy(3))
        live = driver.find_element(By.ID, "live").text
        if live != "live":
            fail(f"the page does not say it is live: {live!r}")
        # Self-contained: nothing was fetched from anywhere but the admin listener.
        origins = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        foreign = [u for u in origins if not u.startswith(admin)]
        if foreign:
            fail(f"the page fetched from elsewhere: {foreign}")
        # Rendered by the script (the page was live above), markup in a route stays text.
        shown = driver.execute_script(
            "return window.hacked === undefined && [...document.querySelectorAll('tr[data-route]')]"
            ".some(r => r.textContent.includes('<img src=x onerror'))"
        )
        if not shown:
            fail("a route's markup was not shown as text by the script")
        driver.save_screenshot(f"{artifacts}/1-three-pods.png")
        say("STEP 3")

        if sys.stdin.readline().strip() != "scaled":
            fail("expected 'scaled'")
        wait_for(driver, "five healthy backends", healthy(5))
        driver.save_screenshot(f"{artifacts}/2-five-pods.png")
        say("STEP 5")

        line = sys.stdin.readline().split()
        if len(line) != 2 or line[0] != "killed":
            fail(f"expected 'killed ADDR', got {line}")
        killed = line[1]

        def unhealthy():
            r = dict(rows(driver, cluster))
            return True if r.get(killed) == "unhealthy" else r

        wait_for(driver, f"{killed} unhealthy", unhealthy)
        wait_for(driver, "four healthy backends", healthy(4))
        driver.save_screenshot(f"{artifacts}/3-pod-killed.png")
        driver.set_window_size(390, 844)
        time.sleep(1.2)
        driver.save_screenshot(f"{artifacts}/4-phone.png")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        if width > 420:
            fail(f"the page is {width}px wide on a 390px phone screen")
        say("STEP unhealthy")
    finally:
        driver.quit()
    say("DONE")


if __name__ == "__main__":
    main()
