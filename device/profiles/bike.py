"""Exercise bike: a rider works through efforts of a few minutes each.

cadence (rpm, int), power (W, float), speed (km/h, float), heart_rate (bpm, int). Heart rate
follows effort with a lag, as it does on a real rider."""

from device.profiles import Rand


class Profile:
    name = "bike"

    def __init__(self, device_id, position=0):
        self.rand = Rand(device_id)
        self.fitness = 0.8 + self.rand.uniform(0.0, 0.5)  # scales the rider's power
        self.left = 0  # samples left in the current effort
        self.target = 0.5
        self.effort = 0.3
        self.hr = 70.0 + self.rand.below(10)

    def sample(self):
        r = self.rand
        if self.left <= 0:
            self.left = 30 + r.below(150)
            self.target = r.uniform(0.2, 1.0)
        self.left -= 1
        self.effort += (self.target - self.effort) * 0.1
        cadence = int(55 + 45 * self.effort + r.uniform(-3, 3))
        power = (60 + 240 * self.effort * self.fitness) * (1 + r.uniform(-0.04, 0.04))
        speed = 12 + 0.09 * power + r.uniform(-0.5, 0.5)
        self.hr += (95 + 85 * self.effort - self.hr) * 0.05
        return {
            "cadence": cadence,
            "power": round(power, 1),
            "speed": round(speed, 1),
            "heart_rate": int(self.hr + r.uniform(-1.5, 1.5)),
        }
