"""Smart fitness mirror: idle most of the time, then workout sessions with rep counting.

session_active (bool), reps (int, count within the session), brightness (%, int, dims when
idle), room_temp (deg C, float, warms slowly while someone trains)."""

from device.profiles import Rand


class Profile:
    name = "mirror"

    def __init__(self, device_id, position=0):
        self.rand = Rand(device_id)
        self.active = False
        self.left = 20 + self.rand.below(60)
        self.reps = 0
        self.temp = 20.5 + self.rand.uniform(0, 1.5)

    def sample(self):
        r = self.rand
        self.left -= 1
        if self.left <= 0:
            self.active = not self.active
            self.left = (60 + r.below(240)) if self.active else (30 + r.below(300))
            self.reps = 0
        if self.active and r.below(3) == 0:
            self.reps += 1
        goal = 22.5 if self.active else 21.0
        self.temp += (goal - self.temp) * 0.01 + r.uniform(-0.02, 0.02)
        return {
            "session_active": self.active,
            "reps": self.reps,
            "brightness": 80 + r.below(20) if self.active else 15 + r.below(5),
            "room_temp": round(self.temp, 2),
        }
